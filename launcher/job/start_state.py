"""What one node agent has seen so far during one start: set by its signal handlers and watchers, read by the rest.

It is runtime state, never pickled: the pickled agent (launcher/node_agent.py) holds configuration only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class StartState:
    tag: str  # this task's name in the restart's files (layout.RestartLayout.tag)
    node_name: str
    world: int = 1  # the planned world size (ranks of the whole job)
    interrupted: bool = False  # the ranks were told to checkpoint and exit for a requeue
    preempted: bool = False  # the warning came with the job selected for preemption
    stopped_by: Optional[str] = None  # the first stop signal (SIGTERM/SIGINT) Slurm sent this task
    kill_at: float = 0.0  # when what is left of the program is SIGKILLed after that signal
    peer_stopped: bool = False  # another task's ranks were stopped by a signal first
    peer_failed: bool = False  # another task failed first: this one ended its ranks
    slurm_keeps_it: bool = False  # the job was found RUNNING and not being preempted after an outside stop
    last_output: float = 0.0  # when a training process of this node last wrote a line
    ranks_spoke: bool = False  # the ranks have written their first line (the hang clock runs from it)
    ending: str = ""  # why the agent itself ends the ranks (a hang here or on another node): one thread does it
    # set once that thread has said why and ended them
    ended: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)
    _claim: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def stopping(self) -> bool:
        """The ranks were told to stop, for a requeue or by Slurm's stop signal."""
        return self.interrupted or bool(self.stopped_by)

    def claim_ending(self, why: str) -> bool:
        """Become the one thread that ends the ranks for `why` (False: another already does)."""
        with self._claim:
            if self.ending:
                return False
            self.ending = why
            return True

    def wait_ending(self, timeout: float) -> None:
        """Wait until the thread ending the ranks has said why (its stacks recorded), if one is."""
        if self.ending:
            self.ended.wait(timeout)
