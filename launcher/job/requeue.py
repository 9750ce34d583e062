"""Whether a start that was stopped is requeued, and by whom: the decisions as pure functions of what Slurm and the
other nodes said (tested as tables of cases), and task 0's steps that gather those answers and ask Slurm.

Slurm stops a start for a time limit, a preemption, a cancel or a node failure, and requeues (or ends) the job itself
where it should. A stop it did not mean (a SIGTERM while the job stays RUNNING) and the time-limit warning are the
agent's to requeue, up to requeue.max_requeues times.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

from ..layout import RestartLayout
from ..node_agent import FROM_ZERO, NodeAgent
from . import slurm_calls
from .agent_log import to_slurm_output
from .peers import wait_all_ended, wait_for_peers
from .start_state import StartState

JobState = Callable[[], Tuple[Optional[str], bool]]  # the job's state now, and whether it is being preempted
SlurmRequeues = Callable[[], bool]  # whether this Slurm requeues a preempted job that ends within its grace


@dataclass(frozen=True)
class OutsideStop:
    """A stop Slurm did not mean, and what it tells: `reason` (None: Slurm is ending the job, or nothing stopped)."""

    reason: Optional[str] = None
    preempted: bool = False  # preempted within a GraceTime, which this Slurm ends for good
    slurm_keeps_it: bool = False  # the job is RUNNING and not being preempted: the requeue need not ask again


def outside_stop(stopped_by: Optional[str], job_state: JobState, slurm_requeues: SlurmRequeues) -> OutsideStop:
    """A signal stopped this start (here, or another task's ranks) and no task failed first: is Slurm ending the job,
    or must the agent requeue it? A SIGTERM that is not a cancel, preemption, time limit or node failure (such as
    slurmctld's retry of a kill meant for this job's earlier start) must end the run neither COMPLETED nor FAILED."""
    state, preempting = job_state()
    if state == "RUNNING" and preempting and not slurm_requeues():
        why = "the job is being preempted within its partition's GraceTime, which this Slurm ends for good"
        return OutsideStop(why, preempted=True)
    if state != "RUNNING" or preempting:
        return OutsideStop()
    who = f"{stopped_by} reached this task" if stopped_by else "another task's ranks were stopped by a signal"
    why = f"{who} while Slurm kept the job running (no cancel, preemption, time limit or node failure)"
    return OutsideStop(why, slurm_keeps_it=True)


def stopped_from_outside(code: int, logs: RestartLayout, ntasks: int, state: StartState) -> Optional[str]:
    """Task 0, at the end of a start that was not stopped for the time limit: why it must be requeued, if a signal
    stopped it while Slurm is not ending the job; None otherwise. Records what Slurm said in `state`."""
    if not state.stopped_by:
        if ntasks <= 1:
            return None
        wait_for_peers(logs, ntasks, 5.0 if code == 0 else 0.0)  # a failure ends the job at once
        if logs.stopped_count() == 0:
            return None
    if logs.failed_count():
        return None  # a task that failed first writes its `failed-*` before srun stops the others
    time.sleep(1.0)  # a shared file system may show it a moment later
    if logs.failed_count():
        return None
    found = outside_stop(state.stopped_by, slurm_calls.job_state, slurm_calls.slurm_requeues_preempted_jobs)
    state.preempted = state.preempted or found.preempted
    state.slurm_keeps_it = found.slurm_keeps_it
    return found.reason


@dataclass(frozen=True)
class Requeue:
    """Whether to ask Slurm for a requeue; `line` says why not (`to_slurm`: also in Slurm's output)."""

    ask: bool
    line: str = ""
    to_slurm: bool = False


def requeue_decision(
    state: StartState, restart: int, max_requeues: int, job_state: JobState, slurm_requeues: SlurmRequeues
) -> Requeue:
    """Task 0's decision once the ranks stopped for a warning or a stop signal."""
    if state.preempted:
        if slurm_requeues():
            # a second requeue on top of Slurm's would start the run once more after it completes
            return Requeue(False, "not requeued: Slurm requeues (or ends) the job it preempts")
    elif (state.peer_stopped or state.stopped_by) and not state.slurm_keeps_it:
        now, preempting = job_state()
        if now != "RUNNING" or preempting:
            being = ", selected for preemption" if preempting else ""
            return Requeue(False, f"not requeued: Slurm is ending the job itself (state {now}{being})")
    if restart >= max_requeues:
        line = (
            f"not requeued: {restart} requeue{'' if restart == 1 else 's'} already "
            f"(requeue.max_requeues={max_requeues})"
        )
        return Requeue(False, line, to_slurm=True)
    return Requeue(True)


def requeue_when_all_stopped(
    agent: NodeAgent, state: StartState, restart: int, logs: RestartLayout, ntasks: int, log_file: Path
) -> bool:
    """Nodes agree before the requeue: task 0 waits until every task's ranks have stopped (their `stopped-*` or
    `finished-*` files in the shared run directory), at most the checkpoint wait, then asks Slurm once."""
    job = os.environ.get("SLURM_JOB_ID")
    stopped = wait_all_ended(logs, ntasks, max(5.0, agent.checkpoint_wait_s))
    with open(log_file, "a") as log:
        log.write(
            f"{stopped} of {ntasks} task{'' if ntasks == 1 else 's'} stopped for the requeue"
            + ("" if stopped >= ntasks else " (not waiting longer)")
            + "\n"
        )
        if not job:
            return False
        decision = requeue_decision(
            state, restart, agent.max_requeues, slurm_calls.job_state, slurm_calls.slurm_requeues_preempted_jobs
        )
        if not decision.ask:
            log.write(decision.line + "\n")
            if decision.to_slurm:
                to_slurm_output(decision.line)
            return False
        # Slurm stops this job as soon as it requeues it: its SIGTERM is the consequence, not news
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ok, said = slurm_calls.requeue(job)
        log.write(f"requeue of job {job}: {said}\n")
        if ok and agent.progress_lost:
            line = f"{FROM_ZERO}: the program keeps no checkpoint danlu knows of (no output_arg, no LightningCLI fit)"
            log.write(line + "\n")
            to_slurm_output(line)
        return ok
