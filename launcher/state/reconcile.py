"""How the state of an attempt is known: the store reconciled with Slurm and with what the job wrote.

Every command that shows or changes states calls this module: `status` (and `--watch`, `--wait`), `show`,
`logs --follow`, `rerun` and `cancel`. A refresh makes one `sacct` call for all active runs (array tasks by
their array job id) and at most one `squeue -t all` call, at the same time. squeue is asked too because it is
the controller's own, current view: sacct lags behind it, and for a few seconds after a requeue (preemption,
node failure) sacct's last record says PREEMPTED/NODE_FAIL while the job is already pending again. Without
sacct (no slurmdbd) squeue and the runs' result files are all there is; what neither knows becomes UNKNOWN,
never a guess. Which states are final and how an attempt moves between them: state/machine.py; a final
state is never overwritten (store.update_attempts).
"""

from __future__ import annotations

import getpass
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .. import slurm
from ..backends import IN_SLURM, SlurmAnswers, ask_slurm, by_backend, for_record
from ..errors import UserError
from ..network_fs import host as this_host_name
from ..store import BRIEF, MANY_RUNS, Store, ViewRows, view_of
from ..timings import phase
from .machine import finish, step
from .names import TERMINAL


class Reconciled(NamedTuple):
    rows: List[Any]  # the rows asked about, fresh from the store
    notes: List[str]  # what could not be found out (printed as warnings by the CLI)


class EarlyAsk:
    """Slurm asked (sacct and squeue, in a thread) about every active job of the store before its rows are read:
    with 100,000 runs in the store, reading and showing them takes as long as Slurm takes to answer. `refresh` uses
    the answers when they cover its rows' jobs, and asks again otherwise (a job submitted in between)."""

    def __init__(self, store: Store) -> None:
        self.ids = set(store.active_job_ids(IN_SLURM))
        self._result: Optional[Tuple[SlurmAnswers, List[str]]] = None
        self._thread = threading.Thread(target=self._ask, daemon=True)
        if self.ids:
            self._thread.start()

    def _ask(self) -> None:
        self._result = ask_slurm(sorted(self.ids))

    def answers(self, ids: Sequence[str]) -> Optional[Tuple[SlurmAnswers, List[str]]]:
        if not self.ids or not set(ids) <= self.ids:
            return None
        self._thread.join()
        return self._result


def refresh(store: Store, rows: List[Any], early: Optional[EarlyAsk] = None) -> Reconciled:
    """Update the store from Slurm for every run of `rows` (Store.latest's, of any view) still active; returns the
    fresh rows, in the same view. `early`: Slurm's answers asked before the rows were read (status)."""
    if not rows:
        return Reconciled(rows, [])
    view = view_of(rows)
    names = list(rows[0].keys())  # by position: sqlite3.Row's lookup by name, 100,000 times, is slow
    fin, job = names.index("final"), names.index("job_id")
    active = [r for r in rows if not r[fin] and r[job]]
    if not active:
        return Reconciled(rows, [])
    if not view.steps:  # e.g. the table's columns: the brief ones of the runs to reconcile (store/views.py)
        with phase("store read (runs to reconcile)"):
            again = store.latest_of_runs([r["run"] for r in active], BRIEF)
            active = [r for r in again if not r["final"] and r["job_id"]]
    updates, notes = _step_all(active, early)
    with phase("store update"):
        applied = store.update_attempts(updates)
    return Reconciled(_fresh(store, rows, updates, applied == len(updates)), notes)


def _step_all(active: List[Any], early: Optional[EarlyAsk]) -> Tuple[List[Dict[str, Any]], List[str]]:
    """What Slurm says of the `active` rows' jobs, and the state machine's step of each: the updates to store."""
    ids = [r["job_id"] for r in active if for_record(r).in_slurm]
    with phase("waiting for squeue and sacct"):
        answers, notes = (early and early.answers(ids)) or ask_slurm(ids)
    updates = []
    with phase("state machine"):
        for r in active:
            upd = step(r, answers)
            if upd:
                upd.update(run=r["run"], attempt=r["attempt"])
                updates.append(upd)
    return updates, notes


def _fresh(store: Store, rows: List[Any], updates: List[Dict[str, Any]], all_applied: bool) -> List[Any]:
    """`rows` as the store has them after `updates`: the runs that may have changed (final states never do) read
    again, as the caller read them; when many changed (the first look after a sweep ended) and the store took every
    update, made from the updates instead (store.updated_rows)."""
    view = view_of(rows)
    names = list(rows[0].keys())
    fin, run = names.index("final"), names.index("run")
    changed = [k for k, r in enumerate(rows) if not r[fin]]
    if len(changed) >= MANY_RUNS and view.covered and all_applied:
        with phase("updates applied to the rows read"):
            merged = store.updated_rows(rows, {u["run"]: u for u in updates})
        if merged is not None:
            return merged
    with phase("store read again (changed runs)"):
        fresh = store.latest_of_runs([rows[k][run] for k in changed], view)
    by_run = {r[run]: r for r in fresh}
    out = ViewRows(view, rows)
    for k in changed:
        out[k] = by_run.get(out[k][run], out[k])
    return out


# ---- cancel ------------------------------------------------------------------------------------
@dataclass
class Cancelled:
    cancelled: List[Any]  # rows now CANCELLED
    ended: List[Tuple[Any, str]]  # rows that had ended otherwise in the meantime, with that state


def cancel(store: Store, rows: Sequence[Any]) -> Cancelled:
    """Cancel the active attempts of `rows` (fresh from `refresh`) and record how each one ended."""
    live = [r for r in rows if not r["final"] and r["job_id"]]
    refuse_other_hosts(live)
    queue: Dict[str, slurm.JobInfo] = {}  # how a job that ended in the meantime ended, where its backend says
    for backend, members in by_backend(live):
        queue.update(backend.cancel(members, store.array_size))
    who = f"cancelled by {getpass.getuser()} (danlu cancel)"
    updates, out = [], Cancelled([], [])
    for r in live:
        q = queue.get(r["job_id"])
        state = slurm.base_state(q.state) if q else ""
        if q is not None and state in TERMINAL and state != "CANCELLED":
            upd = finish(r, q.state, "", q.nodelist, None, elapsed=q.elapsed)
            out.ended.append((r, state))
        else:
            upd = {"state": "CANCELLED", "reason": who, "ended": time.time(), "final": True}
            out.cancelled.append(r)
        updates.append(upd | {"run": r["run"], "attempt": r["attempt"]})
    store.update_attempts(updates)
    return out


def refuse_other_hosts(rows: Sequence[Any]) -> None:
    """UserError when one of the active `rows` is a local run of another host.
    Its pid names no process of this host.
    A cancel of only the other rows would surprise, so nothing is cancelled."""
    elsewhere = [(r, where) for r in rows if (where := for_record(r).judged_elsewhere(r["job_id"])) is not None]
    if elsewhere:
        first, where = elsewhere[0]
        more = f" ({len(elsewhere) - 1} more like it)" if len(elsewhere) > 1 else ""
        raise UserError(
            f"{first['run']} is a local run on {where}, not on this host ({this_host_name()}){more}: nothing cancelled",
            f"run `danlu cancel {first['run']}` on {where}",
        )


# ---- wait --------------------------------------------------------------------------------------
def wait(
    store: Store, sweeps: Sequence[str], poll: float = 2.0, timeout: Optional[float] = None, runs: Sequence[str] = ()
) -> Optional[List[Any]]:
    """Refresh until every run of `sweeps` (and the `runs` named) has ended; their rows (None after `timeout`
    seconds)."""
    start = time.time()
    while True:
        rows = refresh(store, store.latest(sweeps=sweeps, runs=runs)).rows
        if all(r["final"] for r in rows):
            return rows
        if timeout is not None and time.time() - start > timeout:
            return None
        time.sleep(poll)
