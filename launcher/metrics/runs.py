"""Every metric of one run, from what its program wrote: rank 0's step lines of every start of every attempt
(log_lines.py) and the CSV logs under its output dir (csv_logs.py); a metric found in both keeps the source with
more points."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from ..layout import RunLayout
from . import csv_logs, log_lines
from .series import Series, from_points


def run_series(run_dir: Path, attempts: int) -> Dict[str, Series]:
    layout = RunLayout(Path(run_dir))
    restarts = [layout.attempt(a).restarts() for a in range(1, attempts + 1)]
    found: Dict[str, Series] = {}
    sources = [("log", log_lines.run_points(restarts)),
               ("csv", log_lines.merge(csv_logs.read(p) for p in csv_logs.find([layout.output_dir])))]
    for source, points in sources:
        for name, pts in points.items():
            s = from_points(name, source, pts)
            if name not in found or len(s) > len(found[name]):
                found[name] = s
    return found
