"""Every metric of one run, from what its program wrote: rank 0's step lines of every start of every attempt
(log_lines.py), the CSV logs (csv_logs.py) and the TensorBoard event files (tb_events.py) under its output dir; a
metric found in more than one keeps the source with the most points (the logs on a tie)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from ..layout import RunLayout
from . import csv_logs, log_lines, tb_events
from .series import Series, from_columns, from_points


def run_series(run_dir: Path, attempts: int, unread: Optional[List[Path]] = None) -> Dict[str, Series]:
    """The run's metrics by name. Event files found where tensorboard cannot be imported are not read: they are
    added to `unread` (when given) for the caller to say so."""
    layout = RunLayout(Path(run_dir))
    restarts = [layout.attempt(a).restarts() for a in range(1, attempts + 1)]
    found: Dict[str, Series] = {
        name: from_columns(name, "log", *cols) for name, cols in log_lines.run_columns(restarts).items()
    }
    files: Dict[str, List[log_lines.Points]] = {"csv": [csv_logs.read(p) for p in csv_logs.find([layout.output_dir])]}
    events = tb_events.find([layout.output_dir])
    if events and tb_events.available():
        files["tensorboard"] = [tb_events.read(p) for p in events]
    elif events and unread is not None:
        unread.extend(events)
    for source, parts in files.items():
        for name, pts in log_lines.merge(parts).items():
            s = from_points(name, source, pts)
            if name not in found or len(s) > len(found[name]):
                found[name] = s
    return found
