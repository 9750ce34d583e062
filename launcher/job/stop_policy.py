"""The node agent's stop policy, as pure decisions: which signal goes to which rank, and when a warning is ignored.

Slurm sends two kinds of stop. The warning (requeue.signal, before the time limit or at a preemption) asks the
ranks to checkpoint and exit for a requeue. A stop signal (SIGTERM, SIGINT) ends the task within the cluster's
grace. The agent looks at its ranks (job/proctree.py, job/dispositions.py) and these functions say what to do;
the functions send nothing and read no process, so they are tested as tables of cases.
Standard library only.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

# after SIGTERM the program has the cluster's grace (KillWait / GraceTime, slurm.stop_grace) less this margin,
# in which the agent kills what is left, collects the logs and writes the result before Slurm's SIGKILL
STOP_MARGIN_S = 2.0
# when the warning reached ranks whose peers are gone, what still runs after this long (at least) is killed
PEERS_GONE_KILL_S = 5.0


def processes(n: int) -> str:
    """The noun for n training processes, singular for one (the job side counts without launcher/words.py)."""
    return "training process" if n == 1 else "training processes"


@dataclass(frozen=True)
class RanksNow:
    """What the agent sees of its ranks when a warning arrives."""

    ranks: Sequence[int]  # the training processes' pids
    expected: int  # how many there are on this node while the program trains
    running: bool  # the launcher has not exited
    done_elsewhere: Sequence[str]  # tasks on other nodes whose ranks ended by themselves
    checkpoint_signal: Optional[signal.Signals]  # the signal every rank handles (SIGUSR1 first), None if none
    ever_caught: bool  # any rank ever had a handler for a stop signal


@dataclass(frozen=True)
class Action:
    """What to do: `send` to every rank (None: nothing) and the line that says so; `kill_after_s`: then SIGKILL
    what is left of the program after that long (None: no such timer)."""

    send: Optional[signal.Signals]
    line: str
    kill_after_s: Optional[float] = None


def _why_finishing(now: RanksNow) -> str:
    if len(now.ranks) < now.expected or not now.running:
        return f"{now.expected - len(now.ranks)} of {now.expected} {processes(now.expected)} here have ended"
    return "its training processes have put back their signal handlers"


def _how(sig: signal.Signals, ever_caught: bool) -> str:
    if sig == signal.SIGUSR1:
        return "checkpoint and exit for requeue"
    if ever_caught:
        return "they handle SIGTERM, not SIGUSR1"
    return "they have no checkpoint signal handler; they resume from their last checkpoint"


def on_warning(why: str, peer: bool, now: RanksNow, checkpoint_wait_s: float) -> Action:
    """The time-limit or preemption warning (`peer`: another task's ranks were stopped by a signal).

    Ranks whose peers are gone cannot finish, whatever their handlers say: they get their checkpoint signal (else
    SIGTERM), and what still runs after the checkpoint wait is killed. Otherwise a program whose ranks are ending
    one by one, or that put its signal handlers back, has ended its training: nothing to checkpoint, no requeue.
    """
    sig = now.checkpoint_signal if now.ranks else None
    kill_after: Optional[float] = None
    if peer and now.ranks and now.running and not now.done_elsewhere:
        sig = sig or signal.SIGTERM
        kill_after = max(PEERS_GONE_KILL_S, checkpoint_wait_s)
    elif not now.running or len(now.ranks) < now.expected or now.done_elsewhere or sig is None:
        elsewhere = f"; {', '.join(now.done_elsewhere)} ended" if now.done_elsewhere else ""
        return Action(None, f"{why}: ignored, the program is finishing ({_why_finishing(now)}{elsewhere})")
    assert sig is not None
    line = (
        f"{why}: sending {sig.name} to each of the {len(now.ranks)} {processes(len(now.ranks))} "
        f"(pids {' '.join(map(str, now.ranks))}): {_how(sig, now.ever_caught)}"
    )
    return Action(sig, line, kill_after)


def is_early(left: Optional[float], grace_s: float) -> bool:
    """A warning this long (`left` seconds) before the time limit is early: a preemption with a GraceTime, or
    Slurm's early delivery of the time-limit warning (up to a minute early). Unknown time limit: not early."""
    return left is not None and left > grace_s - 2


def early_line(name: str, left: float, grace_s: float) -> str:
    """What the agent says of an early time-limit warning, which it acts on at its own clock instead: every node's
    agent acts at the same moment, end - grace (ranks told seconds apart may disagree: Lightning broadcasts inside
    its SIGTERM handler)."""
    return (
        f"received {name} {left:.0f}s before the time limit (Slurm signals early): "
        f"checkpointing {grace_s:.0f}s before the end instead, with the other nodes"
    )


def on_stop(name: str, signum: int, first: bool, own_checkpoint: bool, nranks: int, stop_grace_s: float) -> Action:
    """A stop signal (SIGTERM, SIGINT) from Slurm. A program with a checkpoint signal gets that one: it stops every
    rank at an agreed step, where a handler on SIGTERM may run collectives inside the handler (Lightning's, which
    deadlocks DDP). The first stop also starts the timer that kills what is left before the cluster's SIGKILL."""
    kill_in = max(1.0, stop_grace_s - STOP_MARGIN_S)
    send = signal.SIGUSR1 if own_checkpoint else signal.Signals(signum)
    told = (
        f"sending SIGUSR1 (their checkpoint signal) to each of the {nranks}"
        if own_checkpoint
        else f"forwarding it to each of the {nranks}"
    )
    timer = f"; SIGKILL for what is left in {kill_in:.0f}s (the cluster gives {stop_grace_s:.0f}s)" if first else ""
    return Action(send, f"received {name}: {told} {processes(nranks)}{timer}", kill_in if first else None)


class Warn(Protocol):
    """Stop this task's ranks as for the time-limit warning (`peer`: another task was stopped by a signal)."""

    def __call__(self, why: str, peer: bool = False) -> None: ...
