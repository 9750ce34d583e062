"""`danlu status`: the squeue-style table of runs, reconciled with Slurm (one sacct + one squeue)."""

from __future__ import annotations

import gc
import json
import time
from argparse import Namespace
from itertools import compress

from ..errors import UserError
from ..state.names import unknown_states
from ..timings import phase
from .common import open_store, store_errors
from .output import err


def check_states(states: str | None) -> None:
    bad = unknown_states(states)
    if bad:
        raise UserError(
            f"unknown state {bad[0]!r}",
            "use Slurm state names such as PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, CANCELLED",
        )


@store_errors
def run(args: Namespace) -> int:
    from ..metrics.live import Prefetch, add_progress
    from ..state.reconcile import EarlyAsk, refresh
    from ..store import MANY_RUNS
    from ..views.table import Fields, filter_items, item_progress, items, render, select

    check_states(args.state)
    store = open_store()
    if args.watch and not args.json:  # live table on a terminal, plain blocks otherwise (views/watch.py)
        from ..views.watch import WatchOptions, watch

        opts = WatchOptions(
            names=tuple(args.names),
            show_all=args.all,
            states=args.state,
            interval=args.interval,
            no_metrics=args.no_metrics,
        )
        return watch(store, opts)
    if not args.watch:
        # one table and the process ends: no cycle collection while 100,000 rows' objects are made (each pass of
        # the collector walks them all: ~10% of such a status); memory is freed by reference counts as usual
        gc.disable()
    while True:
        # squeue and sacct answer while the store is read and the table made (every active job: not when names
        # narrow the table, whose refresh asks about theirs only)
        asked = None if args.names else EarlyAsk(store)
        # the table's columns; with many runs to reconcile (the first look after a sweep ended), the state
        # machine's as well, in the same read (store/views.py)
        view = "brief" if asked is not None and len(asked.ids) >= MANY_RUNS else "table"
        with phase("store read"):
            selected = select(store, args.names, view)
        early = None if args.no_metrics else Prefetch(selected)  # log tails read while squeue and sacct answer
        rows, notes = refresh(store, selected, asked)
        with phase("table"):
            if args.json:
                shown = filter_items(items(rows), args.names, args.all, args.state)
                if not args.no_metrics:
                    add_progress(shown, early)
                text = json.dumps(shown)
            else:  # from the store's rows: an item only for each running run (its progress)
                fields = Fields(rows[0].keys() if rows else [])
                listed = filter_items(rows, args.names, args.all, args.state, fields)
                running = (
                    []
                    if args.no_metrics
                    else items(list(compress(listed, map("RUNNING".__eq__, map(fields.state, listed)))))
                )
                metric = add_progress(running, early) if running else None
                text = render(listed, fields, metric, item_progress(running, metric))
        with phase("print"):
            print(text, flush=args.json)
        for note in notes:
            err(f"warning: {note}")
        if not args.watch:
            return 0
        time.sleep(args.interval)
