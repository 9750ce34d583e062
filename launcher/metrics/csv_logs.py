"""Metrics from CSV logs: Lightning's CSVLogger (`<save_dir>/lightning_logs/version_N/metrics.csv`: epoch, step and
a column per logged metric, empty where a row does not log it). Each start of a Lightning run writes a new
version folder; they are read in version order, so a step trained again after a resume keeps its latest value."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, List

from ..layout import natural_key
from .log_lines import NOT_METRICS, Points

NAME = "metrics.csv"
MAX_DEPTH = 4  # folders down: lightning_logs/version_N/metrics.csv is 2; a logger's save_dir may add some


def find(roots: Iterable[Path], name: str = NAME, max_depth: int = MAX_DEPTH) -> List[Path]:
    """Files called `name` under each root, at most `max_depth` folders down, in natural order per root
    (version_2 before version_10)."""
    found: List[Path] = []
    for root in roots:
        root = Path(root)
        base = len(root.parts)
        hits = []
        for folder, dirs, files in os.walk(root):
            if len(Path(folder).parts) - base >= max_depth:
                dirs[:] = []
            if name in files:
                hits.append(Path(folder) / name)
        hits.sort(key=lambda p: tuple(natural_key(Path(part)) for part in p.relative_to(root).parts))
        found.extend(hits)
    return found


def read(path: Path) -> Points:
    out: Points = {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return out
    for row in rows:
        step = row.get("step")
        if step is None or not step.strip().lstrip("-").isdigit():
            continue
        for name, value in row.items():
            if name is None or name in NOT_METRICS or value is None or value == "":
                continue
            try:
                number = float(value)
            except ValueError:
                continue
            out.setdefault(name, []).append((int(step), number, None))
    return out
