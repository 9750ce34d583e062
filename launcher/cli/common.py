"""What several verbs share: opening the store (with crash recovery first) and its errors."""

from __future__ import annotations

import functools
import sqlite3
from argparse import Namespace
from typing import Any, Callable

from ..errors import UserError
from .output import err


def open_store() -> Any:
    """The run store, after recording any job a crashed danlu left unrecorded (launcher/submit/recovery.py)."""
    from ..store import Store
    from ..submit.recovery import reconcile_submitting
    from ..submit.recovery import warnings as recovery_warnings

    store = Store()
    try:
        done = reconcile_submitting(store)
    except Exception as e:  # recovery is best effort; status must still answer
        err(f"warning: could not check for unrecorded submissions: {e}")
        return store
    for warning, hint in recovery_warnings(done):
        err(f"warning: {warning}")
        err(f"hint: {hint}")
    return store


def store_errors(fn: Callable[[Namespace], int]) -> Callable[[Namespace], int]:
    """A store that breaks while being read (corrupted pages) is bad input: exit 2 with a hint."""

    @functools.wraps(fn)
    def wrapper(args: Namespace) -> int:
        try:
            return fn(args)
        except sqlite3.DatabaseError as e:
            from ..store import default_path

            raise UserError(
                f"the run store {str(default_path())!r} is unreadable: {e}",
                "move the file aside (it may be corrupted) or point DANLU_STORE at another store",
            ) from None

    return wrapper


def in_jobs(nruns: int, njobs: int, local: bool) -> str:
    """ "3 runs in 2 Slurm jobs"; runs on the local cluster are processes on this machine, not Slurm jobs."""
    from ..words import counted

    if local:
        return f"{counted(nruns, 'run')} on this machine (cluster.kind=local: processes here, no Slurm jobs)"
    return f"{counted(nruns, 'run')} in {counted(njobs, 'Slurm job')}"


def report_submitted(args: Namespace, sweep: str, results: dict[str, str], njobs: int, local: bool) -> None:
    """run<TAB>job id per run on stdout (or --json), a summary on stderr."""
    import json

    runs = [{"run": run, "job_id": jid} for run, jid in results.items()]
    if getattr(args, "json", False):
        print(json.dumps({"sweep": sweep, "runs": runs}))
    else:
        for r in runs:
            print(f"{r['run']}\t{r['job_id']}")
    err(f"{'started' if local else 'submitted'} {sweep}: {in_jobs(len(runs), njobs, local)}")


def wait_until_ended(store: Any, sweeps: list[str], runs: list[str] | None = None) -> int:
    """--wait (submit, rerun): block until the latest attempts of these sweeps and runs have ended, print their table
    on stderr; 0 when every one completed, else 1."""
    from ..state.reconcile import wait
    from ..views.table import items, render_plain

    rows = wait(store, sweeps, runs=runs or ()) or []
    err(render_plain(items(rows)))
    return 0 if all(r["state"] == "COMPLETED" for r in rows) else 1


def refreshed_run(store: Any, name: str, verb: str) -> Any:
    """The run's latest attempt as Slurm has it now (Store.latest's full view); an unknown name is bad input."""
    from ..state.reconcile import refresh

    if store.run(name) is None:
        hint = (
            f"danlu status {name}  ({verb} takes one of its runs)" if store.sweep(name) else "`danlu status` lists runs"
        )
        raise UserError(f"no run named {name!r}", hint)
    return refresh(store, store.latest(runs=[name])).rows[0]
