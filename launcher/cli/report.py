"""`danlu report SWEEP`: which run won (views/report.py), from the metrics the runs wrote (launcher/metrics)."""

from __future__ import annotations

import json
import os
import sys
from argparse import Namespace

from ..errors import UserError
from .common import open_store, store_errors


@store_errors
def run(args: Namespace) -> int:
    from ..metrics.runs import run_series
    from ..views.report import RunReport, build, point_values, render

    store = open_store()
    if not store.sweep(args.sweep):
        raise UserError(f"no sweep named {args.sweep!r}", "`danlu status --all` lists your sweeps")
    from ..state.reconcile import refresh

    rows, _ = refresh(store, store.latest(sweeps=[args.sweep]))
    runs = []
    for r in rows:
        values = point_values(json.loads(r["overrides"] or "[]") + json.loads(r["a_overrides"] or "[]"))
        runs.append(RunReport(r["run"], r["state"], values, run_series(r["run_dir"], int(r["attempt"]))))
    report = build(runs, args.metric, args.mode, True if args.group_by_seed else None)
    if args.metric and all(args.metric not in r.series for r in runs):
        found = sorted({n for r in runs for n in r.series})
        raise UserError(f"no run of {args.sweep} wrote a metric named {args.metric!r}",
                        f"metrics found: {', '.join(found) if found else 'none yet'}")
    if args.json:
        print(json.dumps(report))
    else:
        encoding = (getattr(sys.stdout, "encoding", "") or "").lower()
        print(render(report, sparks="utf" in encoding and not os.environ.get("DANLU_NO_SPARKS")))
    return 0
