"""`danlu cancel SWEEP|RUN ...`: scancel the active runs; their states recorded by launcher/state."""

from __future__ import annotations

from argparse import Namespace

from ..errors import NothingToDo
from .common import open_store, store_errors
from .output import err


@store_errors
def run(args: Namespace) -> int:
    from ..state.reconcile import cancel, refresh

    store = open_store()
    sweeps, runs = store.resolve(args.names)
    rows = refresh(store, store.latest(sweeps=sweeps, runs=runs)).rows
    if not any(not r["final"] and r["job_id"] for r in rows):
        raise NothingToDo(
            f"nothing to cancel: {', '.join(args.names)} already ended", "`danlu status --all` shows their states"
        )
    done = cancel(store, rows)
    for r in done.cancelled:
        print(f"{r['run']}\t{r['job_id']}\tCANCELLED")
    for r, state in done.ended:
        print(f"{r['run']}\t{r['job_id']}\t{state}")
    err(f"cancelled {len(done.cancelled)} run(s)" + (f"; {len(done.ended)} had ended already" if done.ended else ""))
    return 0
