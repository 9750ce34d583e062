"""How the state of an attempt is known: the store reconciled with Slurm and with what the job wrote.

Every command that shows or changes states calls this module: `status` (and `--watch`, `--wait`), `show`,
`logs --follow`, `rerun` and `cancel`. A refresh makes one `sacct` call for all active runs (array tasks by
their array job id) and at most one `squeue -t all` call, at the same time. squeue is asked too because it is
the controller's own, current view: sacct lags behind it, and for a few seconds after a requeue (preemption,
node failure) sacct's last record says PREEMPTED/NODE_FAIL while the job is already pending again. Without
sacct (no slurmdbd) squeue and the runs' result files are all there is; what neither knows becomes UNKNOWN,
never a guess. A final state is never overwritten (store.update_attempts).
"""

from __future__ import annotations

import getpass
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .. import slurm
from ..layout import RunLayout
from ..store import Store
from .names import ACTIVE, TERMINAL
from .reasons import classify, tail_lines


class Reconciled(NamedTuple):
    rows: List[Any]  # the rows asked about, fresh from the store
    notes: List[str]  # what could not be found out (printed as warnings by the CLI)


@dataclass
class SlurmAnswers:
    acct: Dict[str, slurm.JobInfo] = field(default_factory=dict)
    queue: Dict[str, slurm.JobInfo] = field(default_factory=dict)
    acct_ok: bool = True
    queue_ok: bool = True


def attempt_files(row: Any) -> Any:
    """The AttemptLayout of a store row (run_dir + attempt)."""
    return RunLayout(Path(row["run_dir"])).attempt(int(row["attempt"]))


def log_files(row: Any) -> List[Path]:
    """The logs of an attempt (every restart) and Slurm's output of its batch script: where a failure's reason is."""
    files = attempt_files(row).log_files()
    slurm_out = RunLayout(Path(row["run_dir"])).slurm_output(row["job_id"])
    return files + ([slurm_out] if slurm_out else [])


def refresh(store: Store, rows: List[Any]) -> Reconciled:
    """Update the store from Slurm for every run of `rows` still active; returns the fresh rows."""
    active = [r for r in rows if r["state"] not in TERMINAL and r["job_id"]]
    if not active:
        return Reconciled(rows, [])
    answers, notes = _ask_slurm([r["job_id"] for r in active if not r["job_id"].startswith("local-")])
    updates = []
    for r in active:
        upd = new_state(r, answers)
        if upd:
            upd.update(run=r["run"], attempt=r["attempt"])
            updates.append(upd)
    store.update_attempts(updates)
    # re-read the runs that may have changed (final states never do), as the caller read them
    changed = [r["run"] for r in rows if r["state"] not in TERMINAL]
    brief = "config" not in rows[0].keys()
    if len(changed) < 900:
        fresh = store.latest(runs=changed, brief=brief)
    else:
        wanted = set(changed)
        fresh = [r for r in store.latest(brief=brief) if r["run"] in wanted]
    by_run = {r["run"]: r for r in fresh}
    return Reconciled([by_run.get(r["run"], r) for r in rows], notes)


def _ask_slurm(slurm_ids: List[str]) -> Tuple[SlurmAnswers, List[str]]:
    """sacct and squeue at once: a busy controller or slurmdbd answers each in a fraction of a second or more."""
    answers, notes = SlurmAnswers(), []
    if not slurm_ids:
        return answers, notes
    asked: Dict[str, Any] = {}

    def ask_accounting() -> None:
        try:
            asked["acct"] = slurm.sacct(slurm_ids)
        except slurm.SlurmUnavailable as e:
            asked["error"] = e

    thread = threading.Thread(target=ask_accounting, daemon=True)
    thread.start()
    try:
        answers.queue = slurm.squeue(slurm_ids)
    except slurm.SlurmUnavailable as e:
        answers.queue_ok = False
        queue_note = f"squeue failed ({_short(e)})"
    thread.join()
    answers.acct = asked.get("acct", {})
    if "error" in asked:
        answers.acct_ok = False
        notes.append(f"sacct is unavailable ({_short(asked['error'])}): states come from squeue and the runs' "
                     "result files; what neither knows is UNKNOWN")
    if not answers.queue_ok:
        notes.append(queue_note)
    return answers, notes


def _short(e: Exception) -> str:
    """The last line of a Slurm command's complaint, e.g. 'Problem talking to the database: Connection refused'."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(e).__name__
    text = re.sub(r"^(?:\w+: )?(?:\w+: error: )", "", text)
    return text if len(text) <= 160 else text[:157] + "..."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _result_state(r: Any) -> Optional[Tuple[str, str, Dict[str, Any]]]:
    """(state, exit code, result) from the result file the job wrote, if it wrote one."""
    res = attempt_files(r).read_result()
    if res is None:
        return None
    code = int(res.get("exit_code", 1))  # type: ignore[call-overload]
    return ("COMPLETED" if code == 0 else "FAILED"), f"{code}:0", res


def new_state(r: Any, answers: SlurmAnswers) -> Optional[Dict[str, Any]]:
    """The store update for one active attempt, from Slurm's answers and the run's files (None: no news)."""
    jid = r["job_id"]
    if jid.startswith("local-"):
        done = _result_state(r)
        if done is not None:
            return finish(r, done[0], done[1], "localhost", None)
        pid = int(jid.split("-", 1)[1]) if jid.split("-", 1)[1].isdigit() else -1
        if pid > 0 and _pid_alive(pid):
            return {"state": "RUNNING", "nodelist": "localhost", "elapsed": time.time() - (r["submitted"] or time.time())}
        return finish(r, "FAILED", "", "localhost", "ended without a result (killed?)")
    q = answers.queue.get(jid)
    a = answers.acct.get(jid)
    if "_" in jid:
        # a pending array cancelled as a whole (`scancel 123_[0-999]`) stays one record, "123", without
        # its tasks: that record is the state of every task
        q = q or answers.queue.get(jid.split("_")[0])
        a = a or answers.acct.get(jid.split("_")[0])
    q_state = slurm.base_state(q.state) if q else None
    a_state = slurm.base_state(a.state) if a else None
    if q is not None and q_state in ACTIVE:
        # the controller says it is queued or running (possibly again, after a requeue)
        return {"state": q_state, "reason": (q.reason or "None") if q_state == "PENDING" else "",
                "nodelist": q.nodelist or None, "elapsed": q.elapsed, "partition": q.partition or None,
                "restarts": a.restarts if a else None, "started": a.started if a else None}
    if a is not None and a_state not in ACTIVE:
        return finish(r, a.state, a.exit_code, a.nodelist, None, elapsed=a.elapsed, restarts=a.restarts,
                      started=a.started, ended=a.ended)
    if q is not None:
        # ended a moment ago: the controller knows how (sacct not yet, or not at all)
        done = _result_state(r)
        return finish(r, q.state, done[1] if done else "", q.nodelist, None, elapsed=q.elapsed,
                      restarts=a.restarts if a else None)
    if a is not None:
        # sacct says queued/running but the controller no longer lists it: accounting lags; keep sacct's view
        return {"state": a_state, "reason": (a.reason or "None") if a_state == "PENDING" else "",
                "nodelist": a.nodelist or None, "elapsed": a.elapsed, "restarts": a.restarts, "started": a.started}
    if not answers.acct_ok:
        # no accounting and gone from the controller: trust only what the job itself wrote; never guess
        done = _result_state(r)
        if done is not None and not done[2].get("interrupted") and answers.queue_ok:
            ended = done[2].get("ended")
            return finish(r, done[0], done[1], None, None, ended=ended if isinstance(ended, (int, float)) else None)
        why = ("sacct is unavailable and squeue failed" if not answers.queue_ok
               else "sacct is unavailable and squeue no longer lists the job")
        return {"state": "UNKNOWN", "reason": why}
    return None  # accounting has not caught up yet (just submitted): keep the last known state


def finish(r: Any, state: str, exit_code: str, nodelist: Optional[str], reason: Optional[str],
           elapsed: Optional[int] = None, restarts: Optional[int] = None, started: Optional[float] = None,
           ended: Optional[float] = None) -> Dict[str, Any]:
    """The store update of an attempt that ended: its final state, and why (from its logs) unless it completed."""
    base = slurm.base_state(state)
    if reason is None and base != "COMPLETED":
        reason = classify(state, exit_code, nodelist or "", lambda: tail_lines(log_files(r)))
    return {"state": base, "reason": reason or "", "exit_code": exit_code or None, "nodelist": nodelist or None,
            "started": started, "ended": ended or time.time(), "elapsed": elapsed, "restarts": restarts}


# ---- cancel ------------------------------------------------------------------------------------
@dataclass
class Cancelled:
    cancelled: List[Any]  # rows now CANCELLED
    ended: List[Tuple[Any, str]]  # rows that had ended otherwise in the meantime, with that state


def cancel(store: Store, rows: Sequence[Any]) -> Cancelled:
    """Cancel the active attempts of `rows` (fresh from `refresh`) and record how each one ended."""
    live = [r for r in rows if r["state"] not in TERMINAL and r["job_id"]]
    slurm_rows = [r for r in live if not r["job_id"].startswith("local-")]
    slurm.scancel(_scancel_ids(store, slurm_rows))
    for r in live:
        if r["job_id"].startswith("local-"):
            try:
                os.killpg(int(r["job_id"].split("-", 1)[1]), signal.SIGTERM)
            except (ProcessLookupError, ValueError, PermissionError):
                pass
    # scancel is silent about jobs that ended in the meantime: ask the controller how each one ended
    try:
        queue = slurm.squeue([r["job_id"] for r in slurm_rows])
    except slurm.SlurmUnavailable:
        queue = {}
    who = f"cancelled by {getpass.getuser()} (danlu cancel)"
    updates, out = [], Cancelled([], [])
    for r in live:
        q = queue.get(r["job_id"])
        state = slurm.base_state(q.state) if q else ""
        if q is not None and state in TERMINAL and state != "CANCELLED":
            upd = finish(r, q.state, "", q.nodelist, None, elapsed=q.elapsed)
            out.ended.append((r, state))
        else:
            upd = {"state": "CANCELLED", "reason": who, "ended": time.time()}
            out.cancelled.append(r)
        updates.append(upd | {"run": r["run"], "attempt": r["attempt"]})
    store.update_attempts(updates)
    return out


def _scancel_ids(store: Store, rows: Sequence[Any]) -> List[str]:
    """A whole array by its array job id when every task of it is being cancelled: one short scancel."""
    ids = set()
    by_array: Dict[str, List[Any]] = {}
    for r in rows:
        if r["array_job_id"]:
            by_array.setdefault(r["array_job_id"], []).append(r)
        else:
            ids.add(r["job_id"])
    for array_id, members in by_array.items():
        if len(members) == store.array_size(array_id):
            ids.add(array_id)
        else:
            ids.update(m["job_id"] for m in members)
    return sorted(ids)


# ---- wait --------------------------------------------------------------------------------------
def wait(store: Store, sweeps: Sequence[str], poll: float = 2.0, timeout: Optional[float] = None) -> Optional[List[Any]]:
    """Refresh until every run of `sweeps` has ended; their rows (None after `timeout` seconds)."""
    start = time.time()
    while True:
        rows = refresh(store, store.latest(sweeps=sweeps)).rows
        if all(r["state"] in TERMINAL for r in rows):
            return rows
        if timeout is not None and time.time() - start > timeout:
            return None
        time.sleep(poll)
