"""What one node agent has seen so far during one start: set by its signal handlers and watchers, read by the rest.

It is runtime state, never pickled: the pickled agent (launcher/node_agent.py) holds configuration only.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    def stopping(self) -> bool:
        """The ranks were told to stop, for a requeue or by Slurm's stop signal."""
        return self.interrupted or bool(self.stopped_by)
