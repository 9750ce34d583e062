"""The hang watchdog: a rank blocked in a collective whose peer hangs never ends by itself (gloo and NCCL wait up
to 30 min). When no training process of this node has written a line for launch.hang_timeout_s, the job ends as
hung."""

from __future__ import annotations

import time

from .agent_log import Say, to_slurm_output
from .proctree import Child, kill_program
from .start_state import StartState

# before the ranks' first line the watchdog waits at least this long (imports, data, rendezvous)
STARTUP_SILENCE_S = 300.0


def silence_limit(hang_timeout_s: float, ranks_spoke: bool) -> float:
    """How long a silence may last before the node is hung."""
    return hang_timeout_s if ranks_spoke else max(hang_timeout_s, STARTUP_SILENCE_S)


def watch_silence(child: Child, state: StartState, hang_timeout_s: float, say: Say) -> None:
    """Once a second while the program runs: end it when it has been silent past the limit (not while stopping)."""
    while child.poll() is None:
        time.sleep(1.0)
        quiet = time.time() - state.last_output
        if quiet < silence_limit(hang_timeout_s, state.ranks_spoke) or state.stopping():
            continue
        line = (
            f"hung: no output from the training processes on {state.node_name} "
            f"for {quiet:.0f}s (launch.hang_timeout_s={hang_timeout_s:.0f}); ending the job"
        )
        say(line)
        to_slurm_output(line)
        kill_program(child)
        return
