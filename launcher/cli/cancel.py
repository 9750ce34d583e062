"""`danlu cancel SWEEP|RUN ...`: scancel the active runs; their states recorded by launcher/state."""

from __future__ import annotations

import json
from argparse import Namespace

from ..errors import NothingToDo
from .common import open_store, store_errors
from .output import err


@store_errors
def run(args: Namespace) -> int:
    from ..state.names import parse_states
    from ..state.reconcile import cancel, refresh, refuse_other_hosts
    from ..words import counted
    from .status import check_states

    check_states(args.state)
    store = open_store()
    sweeps, runs = store.resolve(args.names)
    rows = refresh(store, store.latest(sweeps=sweeps, runs=runs)).rows
    if args.state:  # e.g. only the PENDING runs of a sweep, leaving the running ones be
        rows = [r for r in rows if r["state"] in parse_states(args.state)]
    live = [r for r in rows if not r["final"] and r["job_id"]]
    if not live:
        what = f"no {args.state} run in" if args.state else "nothing to cancel:"
        raise NothingToDo(
            f"{what} {', '.join(args.names)}{'' if args.state else ' already ended'}",
            "`danlu status --all` shows their states",
        )
    refuse_other_hosts(live)
    if args.dry_run:
        out = [(r, r["state"]) for r in live]
    else:
        done = cancel(store, live)
        out = [(r, "CANCELLED") for r in done.cancelled] + list(done.ended)
    if args.json:
        print(json.dumps([{"run": r["run"], "job_id": r["job_id"], "state": state} for r, state in out]))
    else:
        for r, state in out:
            print(f"{r['run']}\t{r['job_id']}\t{state}")
    if args.dry_run:
        err(f"dry run: would cancel {counted(len(live), 'run')}; nothing cancelled")
        return 0
    ended = f"; {len(done.ended)} had ended already" if done.ended else ""
    err(f"cancelled {counted(len(done.cancelled), 'run')}{ended}")
    return 0
