"""`danlu report SWEEP`: which run won (views/report.py), from the metrics the runs wrote (launcher/metrics)."""

from __future__ import annotations

import json
import os
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import UserError
from ..words import counted
from .common import open_store, store_errors

NOT_STARTED = frozenset({"SUBMITTING", "PENDING", "UNSUBMITTED"})  # a run in these may have written nothing yet


def sweep_runs(
    store: Any, sweep: str, metrics_dirs: Sequence[str] = (), looked: Optional[Dict[str, List[Path]]] = None
) -> Tuple[List[Any], List[Any]]:
    """(store rows refreshed from Slurm, RunReport per run with its metrics) of a sweep; warns of unread files.
    Each run's CSV and event files are searched for under its output dir, its LightningCLI log folders and
    `metrics_dirs` (relative ones: the run's workdir's); `looked` (when given) gets those folders per run."""
    from ..metrics.runs import config_roots, run_series, search_roots
    from ..state.reconcile import refresh
    from ..views.report import RunReport, point_values

    if not store.sweep(sweep):
        raise UserError(f"no sweep named {sweep!r}", "`danlu status --all` lists your sweeps")
    rows, _ = refresh(store, store.latest(sweeps=[sweep]))
    runs = []
    unread: List[Path] = []
    for r in rows:
        values = point_values(json.loads(r["overrides"] or "[]") + json.loads(r["a_overrides"] or "[]"))
        extra = config_roots(r["config"], r["workdir"], metrics_dirs)
        if looked is not None:
            looked[r["run"]] = search_roots(Path(r["run_dir"]), extra)
        series = run_series(r["run_dir"], int(r["attempt"]), unread, extra)
        runs.append(RunReport(r["run"], r["state"], values, series, int(r["idx"]), r["code"]))
    if unread:
        print(
            f"warning: {counted(len(unread), 'TensorBoard event file')} not read: tensorboard is not installed here\n"
            "hint: pip install 'danlu[report]'",
            file=sys.stderr,
        )
    return rows, runs


def _no_metrics(runs: List[Any], looked: Dict[str, List[Path]], show: int = 6) -> Optional[str]:
    """The warning and hint for the runs that have started and wrote no metric the report could find."""
    empty = [r.run for r in runs if not r.series and r.state not in NOT_STARTED]
    if not empty:
        return None
    names = ", ".join(empty[:show]) + (f" and {len(empty) - show} more" if len(empty) > show else "")
    folders = list(
        dict.fromkeys(str(p) + ("" if p.is_dir() else " (no such folder)") for r in empty for p in looked[r])
    )
    under = ", ".join(folders[:show]) + (f" and {len(folders) - show} more" if len(folders) > show else "")
    return (
        f"warning: no metrics found for {counted(len(empty), 'run')} ({names}): looked in rank 0's log lines "
        f"(step=N key=value) and for CSV and TensorBoard files under {under}\n"
        "hint: a program that writes its logs elsewhere: --metrics-dir DIR searches DIR too "
        "(relative to each run's workdir; repeatable)"
    )


@store_errors
def run(args: Namespace) -> int:
    from ..views.report import as_json, build, render

    html_path = _html_target(args.html) if args.html else None
    store = open_store()
    looked: Dict[str, List[Path]] = {}
    rows, runs = sweep_runs(store, args.sweep, args.metrics_dir or (), looked)
    missing = _no_metrics(runs, looked)
    if missing:
        print(missing, file=sys.stderr)
    report = build(runs, args.metric, args.mode, True if args.group_by_seed else None)
    if args.metric and all(args.metric not in r.series for r in runs):
        found = sorted({n for r in runs for n in r.series})
        raise UserError(
            f"no run of {args.sweep} wrote a metric named {args.metric!r}",
            f"metrics found: {', '.join(found) if found else 'none yet'}",
        )
    if html_path is not None:
        from ..views.report_page import write_page

        write_page(html_path, report, args.sweep, rows)
    if args.json:
        print(json.dumps(as_json(report)))
    else:
        encoding = (getattr(sys.stdout, "encoding", "") or "").lower()
        print(render(report, sparks="utf" in encoding and not os.environ.get("DANLU_NO_SPARKS")))
    return 0


def _html_target(name: str) -> Path:
    """Where --html writes, checked before anything is read or written (and plotly is there to draw it)."""
    path = Path(name).expanduser()
    if path.is_dir():
        raise UserError(f"--html {name}: is a directory", "give the page's file name, e.g. --html report.html")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"--html {name}: no folder {str(parent)!r}", "create it first, or write the page elsewhere")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"--html {name}: cannot write there (permission denied)", "write the page elsewhere")
    try:
        import plotly.offline  # noqa: F401  (the page carries plotly.js inline)
    except ImportError:
        raise UserError(
            "--html needs plotly, which is not installed here", "pip install 'danlu[report]' (or: pip install plotly)"
        ) from None
    return path
