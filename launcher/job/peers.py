"""The protocol between the nodes of one start, in files of the restart's folder (launcher/layout.py): each task
writes `failed-*` when its program failed first, `stopped-*` when its ranks stopped for a signal, `finished-*` when
its program ended by itself; the other tasks act on what they find there."""

from __future__ import annotations

import time

from ..layout import RestartLayout
from .agent_log import Say
from .proctree import Child, kill_program
from .start_state import StartState
from .stop_policy import Warn


def record_outcome(logs: RestartLayout, state: StartState, code: int) -> None:
    """This task's outcome, for the other tasks. The task that failed says how the job ended, and srun ends the step
    when it exits; a stopped task's ranks are done (the barrier before a requeue); a task that ended by itself makes
    a late warning on another node be ignored."""
    if state.peer_failed:
        return
    if state.stopping():
        logs.stopped(state.tag).write_text(f"{code}\n")
    elif code == 0:
        logs.finished(state.tag).write_text("0\n")
    else:
        logs.failed(state.tag).write_text(f"{code}\n")


def end_for_failed_peer(child: Child, logs: RestartLayout, state: StartState, say: Say, why: str = "") -> bool:
    """Another task failed first (its `failed-*` file): the job is failing, so nothing here is worth a checkpoint or
    a wait (the ranks would only break in their next collective). End this task's ranks at once; the task that
    failed reports why, and srun ends the step when it exits."""
    if state.stopping() or state.ending:
        return False  # (ending: the watchdog records the ranks' stacks and ends them itself)
    failed = [t for t in logs.failed_tags() if t != state.tag]
    if not failed:
        return False
    state.peer_failed = True
    say((f"{why}: " if why else "") + f"{failed[0]} failed: ending this task's training processes now")
    kill_program(child)
    return True


def watch_peers(child: Child, logs: RestartLayout, state: StartState, warn: Warn, say: Say) -> None:
    """Another task stopped for a signal this one was not sent (its `stopped-*` file): stop this task's ranks as for
    the time limit, checkpoint and all, rather than leave them waiting for their peers in a collective or have srun
    kill them. Task 0 then asks Slurm to requeue the job (unless Slurm is ending it)."""
    while child.poll() is None and not state.stopping():
        if end_for_failed_peer(child, logs, state, say):
            return
        if logs.stopped_count():
            state.peer_stopped = True
            warn("another task's ranks were stopped by a signal", peer=True)
            return
        time.sleep(0.5)


def wait_for_peers(logs: RestartLayout, ntasks: int, wait_s: float) -> None:
    """Every rank leaves at one agreed step: wait up to `wait_s` for the other tasks' outcome, or a stop."""
    end = time.time() + wait_s
    while logs.ended_count() < ntasks - 1 and logs.stopped_count() == 0 and time.time() < end:
        time.sleep(0.2)


def wait_all_ended(logs: RestartLayout, ntasks: int, wait_s: float) -> int:
    """Wait up to `wait_s` until every task's program has ended; how many have."""
    end = time.time() + wait_s
    while logs.ended_count() < ntasks and time.time() < end:
        time.sleep(0.2)
    return logs.ended_count()
