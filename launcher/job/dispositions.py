"""What a training process does with a signal, read from the process table (/proc/<pid>/status, Linux).

The agent decides how to stop a program for the time limit from what the program itself has set up:
  * a rank that catches SIGUSR1 checkpoints on it (the examples; a program with its own handler);
  * else a rank that catches SIGTERM stops gracefully on it (Lightning's trainer; NeMo-style callbacks);
  * a program that caught either earlier and catches neither now has restored its handlers because its training
    is over (Lightning does so when `fit` returns): it is finishing, there is nothing to checkpoint;
  * a program that never caught either has no checkpoint-on-signal at all: SIGTERM stops it, and it resumes
    from its own last checkpoint.
The agent starts every launcher with SIGUSR1 ignored, so a rank that has not installed a handler (yet) never
dies of it, and Lightning, which leaves an existing SIGUSR1 disposition alone, never takes it for its own
auto-requeue (danlu owns the requeue).
"""

from __future__ import annotations

import signal
import threading
from typing import Callable, List, Optional

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


def _mask(pid: int, field: str) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def catches(pid: int, sig: int) -> bool:
    """True if process `pid` has a handler installed for `sig` (SigCgt); False if not, or gone."""
    mask = _mask(pid, "SigCgt")
    return mask is not None and bool(mask >> (int(sig) - 1) & 1)


class HandlerWatch:
    """Remembers whether any training process of this node has ever caught SIGUSR1 or SIGTERM.

    A thread looks at the ranks five times a second until it has seen one (ranks appear some seconds after their
    launcher, once torch and the program are imported). A short program may hold its handlers for a second only."""

    def __init__(self, ranks: Callable[[], List[int]], running: Callable[[], bool], every: float = 0.2) -> None:
        self._ranks = ranks
        self._running = running
        self._every = every
        self._stop = threading.Event()
        self.ever_caught = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _look(self, pids: List[int]) -> bool:
        if any(catches(p, s) for p in pids for s in STOP_SIGNALS):
            self.ever_caught = True
        return self.ever_caught

    def _loop(self) -> None:
        while self._running() and not self._stop.wait(self._every):
            if self._look(self._ranks()):
                return

    def close(self) -> None:
        self._stop.set()

    def checkpoint_signal(self, pids: List[int]) -> Optional[signal.Signals]:
        """The signal that makes these ranks checkpoint and stop now, or None if the program is finishing."""
        if any(catches(p, signal.SIGUSR1) for p in pids):
            return signal.SIGUSR1
        if any(catches(p, signal.SIGTERM) for p in pids):
            self.ever_caught = True
            return signal.SIGTERM
        if self.ever_caught:
            return None  # it had handlers and has put them back: its training is over
        return signal.SIGTERM
