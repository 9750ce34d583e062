"""The node agent's own lines: its log in the restart's folder, copied to the task's stderr, and the lines meant for
Slurm's output (where state/reasons.py finds a run's reason)."""

from __future__ import annotations

import os
import sys
import time
from typing import BinaryIO, Callable

Say = Callable[[str], None]  # a line of the agent's own in this node's log


class AgentLog:
    """Writes `<time> [danlu agent <tag> <node>] <message>` lines. The file must be unbuffered: the signal handlers
    say what they do, and may interrupt the main thread inside `say`; a buffered file (or print) entered twice
    raises "reentrant call" and would end the agent."""

    def __init__(self, file: BinaryIO, tag: str, node_name: str) -> None:
        self._file = file
        self._prefix = f"[danlu agent {tag} {node_name}]"

    def say(self, msg: str) -> None:
        now = time.time()  # milliseconds: a failure's seconds across nodes are read from these lines
        line = (
            f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d} "
            f"{self._prefix} {msg}\n"
        )
        data = line.encode(errors="replace")
        for write in (self._file.write, lambda b: os.write(sys.stderr.fileno(), b)):
            try:  # a handler may run after the log was closed (a signal during the requeue): never fatal
                write(data)
            except (OSError, ValueError):
                pass


def to_slurm_output(line: str) -> None:
    """A line for Slurm's output file of the job: state/reasons.py reads the run's reason from it."""
    print(f"[danlu agent] {line}", file=sys.stderr, flush=True)
