"""The state machine of an attempt: which states danlu shows, which of them are final, and the one step that
takes an attempt from what the store knew to what Slurm (one sacct, one squeue) and the run's own files say now.

    SUBMITTING --sbatch accepted--> PENDING --> RUNNING --> COMPLETING --> COMPLETED, FAILED, CANCELLED,
        |                              ^           |                      OUT_OF_MEMORY, BOOT_FAIL, DEADLINE
        |                              |           |                      (final)
        |                              +-requeue---+  the agent's, before a time limit; Slurm's, on preemption or
        |                                 |           a dead node (danlu submits with --requeue)
        |                           PREEMPTED, NODE_FAIL, TIMEOUT: provisional while Slurm still holds the job
        |                           (it may start it again), final once squeue answers without it
        +--sbatch refused--> (dropped: nothing reached Slurm)
    UNKNOWN (neither Slurm nor the run's files can say, e.g. sacct down and squeue no longer lists the job):
    provisional.

A final state never changes again (store.update_attempts) and is what `rerun` acts on; a provisional one is
looked at again on every refresh. A missing or failed answer never makes a state final: without squeue's
answer a PREEMPTED job may be pending again already; without sacct only the run's own result file can say
how it ended.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .. import slurm
from ..backends import Backend, SlurmAnswers, batch_output, for_record
from ..layout import AttemptLayout, RunLayout
from .names import ACTIVE, TERMINAL
from .reasons import classify, tail_lines

# ends after which Slurm may start the job again (danlu's jobs are submitted with --requeue)
PROVISIONAL_ENDS = frozenset({"PREEMPTED", "NODE_FAIL", "TIMEOUT"})


def is_final(state: str, held: Optional[bool]) -> bool:
    """Whether `state` can no longer change. held: True when squeue lists the job, False when squeue answered
    without it, None when squeue failed (then a requeueable end stays provisional)."""
    if state in PROVISIONAL_ENDS:
        return held is False
    return state in TERMINAL


def attempt_files(row: Any) -> AttemptLayout:
    """The AttemptLayout of a store row (run_dir + attempt)."""
    return RunLayout(Path(row["run_dir"])).attempt(int(row["attempt"]))


def log_files(row: Any) -> List[Path]:
    """The logs of an attempt (every restart) and Slurm's output of its batch script: where a failure's reason is."""
    files = attempt_files(row).log_files()
    slurm_out = batch_output(row)
    return files + ([slurm_out] if slurm_out else [])


def _result_state(r: Any) -> Optional[Tuple[str, str, Dict[str, Any]]]:
    """(state, exit code, result) from the result file the job wrote, if it wrote one."""
    res = attempt_files(r).read_result()
    if res is None:
        return None
    code = int(res.get("exit_code", 1))
    return ("COMPLETED" if code == 0 else "FAILED"), f"{code}:0", res


def step(r: Any, answers: SlurmAnswers) -> Optional[Dict[str, Any]]:
    """The store update for one attempt that is not final yet, from Slurm's answers and the run's files
    (None: no news). Every update says whether its state is final."""
    jid = r["job_id"]
    backend = for_record(r)
    if not backend.in_slurm:
        return _local_process(r, jid, backend)
    q, a = _records(jid, answers)
    update = _from_slurm(r, q, a, answers)
    if update is None or a is None or not a.raw:
        return update
    return {"accounting": a.raw} | update  # sacct's own record, for `danlu show`


def _local_process(r: Any, jid: str, backend: Backend) -> Dict[str, Any]:
    """A local run: its result file, else its process, which only the host it runs on can see."""
    done = _result_state(r)
    if done is not None:
        return finish(r, done[0], done[1], "localhost", None)
    where = backend.judged_elsewhere(jid)
    if where is not None:
        # another host's pid says nothing about the run: the state stays what its own host last saw
        return {"reason": f"a local run on {where}: ask there", "final": False}
    if backend.alive(jid):
        return {
            "state": "RUNNING",
            "reason": "",
            "nodelist": "localhost",
            "final": False,
            "elapsed": time.time() - (r["submitted"] or time.time()),
        }
    return finish(r, "FAILED", "", "localhost", "ended without a result (killed?)")


def _records(jid: str, answers: SlurmAnswers) -> Tuple[Optional[slurm.JobInfo], Optional[slurm.JobInfo]]:
    """The queue's and the accounting's record of a job (None where they have none)."""
    q = answers.queue.get(jid)
    a = answers.acct.get(jid)
    if "_" in jid:
        # a pending array cancelled as a whole (`scancel 123_[0-999]`) stays one record, "123", without
        # its tasks: that record is the state of every task
        q = q or answers.queue.get(jid.split("_")[0])
        a = a or answers.acct.get(jid.split("_")[0])
    return q, a


def _from_slurm(
    r: Any, q: Optional[slurm.JobInfo], a: Optional[slurm.JobInfo], answers: SlurmAnswers
) -> Optional[Dict[str, Any]]:
    """Which answer decides: the controller's while it has the job queued or running, else accounting's end, else
    the controller's end, else accounting's queued or running; with neither record, the run's own result file."""
    held = (q is not None) if answers.queue_ok else None  # does the controller still hold the job?
    if q is not None and slurm.base_state(q.state) in ACTIVE:
        return _queued_per_controller(q, a)
    if a is not None and slurm.base_state(a.state) not in ACTIVE:
        return _ended_per_accounting(r, a, held)
    if q is not None:
        return _ended_per_controller(r, q, a)
    if a is not None:
        return _queued_per_accounting(a)
    return _without_records(r, answers)


def _queued_per_controller(q: slurm.JobInfo, a: Optional[slurm.JobInfo]) -> Dict[str, Any]:
    """The controller says it is queued or running (possibly again, after a requeue)."""
    state = slurm.base_state(q.state)
    return {
        "state": state,
        "reason": (q.reason or "None") if state == "PENDING" else "",
        "nodelist": q.nodelist or None,
        "elapsed": q.elapsed,
        "partition": q.partition or None,
        "restarts": a.restarts if a else None,
        "started": a.started if a else None,
        "final": False,
    }


def _ended_per_accounting(r: Any, a: slurm.JobInfo, held: Optional[bool]) -> Dict[str, Any]:
    """Accounting says it ended: final unless Slurm may start it again."""
    return finish(
        r,
        a.state,
        a.exit_code,
        a.nodelist,
        None,
        elapsed=a.elapsed,
        restarts=a.restarts,
        started=a.started,
        ended=a.ended,
        held=held,
    )


def _ended_per_controller(r: Any, q: slurm.JobInfo, a: Optional[slurm.JobInfo]) -> Dict[str, Any]:
    """Ended a moment ago: the controller knows how (sacct not yet, or not at all)."""
    done = _result_state(r)
    return finish(
        r,
        q.state,
        done[1] if done else "",
        q.nodelist,
        None,
        elapsed=q.elapsed,
        restarts=a.restarts if a else None,
        held=True,
    )


def _queued_per_accounting(a: slurm.JobInfo) -> Dict[str, Any]:
    """sacct says queued/running but the controller no longer lists it: accounting lags; keep sacct's view."""
    state = slurm.base_state(a.state)
    return {
        "state": state,
        "reason": (a.reason or "None") if state == "PENDING" else "",
        "nodelist": a.nodelist or None,
        "elapsed": a.elapsed,
        "restarts": a.restarts,
        "started": a.started,
        "final": False,
    }


def _without_records(r: Any, answers: SlurmAnswers) -> Optional[Dict[str, Any]]:
    """Neither the controller nor accounting has the job."""
    if answers.acct_ok:
        return None  # accounting has not caught up yet (just submitted): keep the last known state
    # no accounting and gone from the controller: trust only what the job itself wrote; never guess
    done = _result_state(r)
    if done is not None and not done[2].get("interrupted") and answers.queue_ok:
        ended = done[2].get("ended")
        return finish(r, done[0], done[1], None, None, ended=ended if isinstance(ended, (int, float)) else None)
    why = (
        "sacct is unavailable and squeue failed"
        if not answers.queue_ok
        else "sacct is unavailable and squeue no longer lists the job"
    )
    return {"state": "UNKNOWN", "reason": why, "final": False}


def finish(
    r: Any,
    state: str,
    exit_code: str,
    nodelist: Optional[str],
    reason: Optional[str],
    elapsed: Optional[int] = None,
    restarts: Optional[int] = None,
    started: Optional[float] = None,
    ended: Optional[float] = None,
    held: Optional[bool] = False,
) -> Dict[str, Any]:
    """The store update of an attempt that ended (for now, if Slurm may still requeue it: `held`), and why (from
    its logs) unless it completed."""
    base = slurm.base_state(state)
    if reason is None and base != "COMPLETED":
        reason = classify(state, exit_code, nodelist or "", lambda: tail_lines(log_files(r)))
    return {
        "state": base,
        "reason": reason or "",
        "exit_code": exit_code or None,
        "nodelist": nodelist or None,
        "started": started,
        "ended": ended or time.time(),
        "elapsed": elapsed,
        "restarts": restarts,
        "final": is_final(base, held),
    }


def failed_nodes(attempt: Any, run: Any) -> List[str]:
    """The hosts an attempt failed on (`rerun --exclude-failed-nodes`): those whose node agent recorded the failure
    (`failed-<tag>` in the run directory) or, for a node failure, whose agent never logged its exit; every host of
    the attempt when its logs cannot tell them apart."""
    hosts = slurm.expand_hostlist(attempt["nodelist"] or "")
    latest = RunLayout(Path(run["run_dir"])).attempt(int(attempt["attempt"])).latest()
    if latest is None:
        return hosts
    host_of: Dict[str, str] = {}  # agent tag -> the host it ran on: "[danlu agent node1 gpu-07] ..."
    ended: set[str] = set()
    for tag, log in latest.agent_logs().items():
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        named = re.search(r"\[danlu agent (\S+) (\S+)\]", text)
        if named:
            host_of[tag] = named.group(2)
        if "] exit code " in text:
            ended.add(tag)
    failed = {host_of[t] for t in latest.failed_tags() if t in host_of}
    if not failed and slurm.base_state(attempt["state"] or "") == "NODE_FAIL":
        failed = {h for t, h in host_of.items() if t not in ended} | (set(hosts) - set(host_of.values()))
    return sorted(failed & set(hosts)) or hosts
