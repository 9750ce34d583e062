"""Every metric of one run, from what its program wrote: rank 0's step lines of every start of every attempt
(log_lines.py) and the CSV logs under its output dir (csv_logs.py); a metric found in both keeps the source with
more points."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from ..layout import RunLayout
from . import csv_logs, log_lines
from .series import Series, from_columns, from_points


def run_series(run_dir: Path, attempts: int) -> Dict[str, Series]:
    layout = RunLayout(Path(run_dir))
    restarts = [layout.attempt(a).restarts() for a in range(1, attempts + 1)]
    found: Dict[str, Series] = {name: from_columns(name, "log", *cols)
                                for name, cols in log_lines.run_columns(restarts).items()}
    for name, pts in log_lines.merge(csv_logs.read(p) for p in csv_logs.find([layout.output_dir])).items():
        s = from_points(name, "csv", pts)
        if name not in found or len(s) > len(found[name]):
            found[name] = s
    return found
