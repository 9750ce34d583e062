"""Every metric of one run, from what its program wrote: rank 0's step lines of every start of every attempt
(log_lines.py), the CSV logs (csv_logs.py) and the TensorBoard event files (tb_events.py) under its output dir and
under the caller's other folders (a LightningCLI config's log folders, --metrics-dir); a metric found in more than one
keeps the source with the most points (the logs on a tie)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..layout import RunLayout
from . import csv_logs, log_lines, tb_events
from .series import Series, from_columns, from_points


def search_roots(run_dir: Path, extra_roots: Sequence[Path] = ()) -> List[Path]:
    """The folders searched for CSV and event files: the run's output dir, then `extra_roots`, each once."""
    roots: Dict[str, Path] = {}
    for root in [RunLayout(Path(run_dir)).output_dir, *extra_roots]:
        roots.setdefault(os.path.normpath(os.path.abspath(root)), Path(root))
    return list(roots.values())


def config_roots(config: Optional[str], workdir: Optional[str], metrics_dirs: Sequence[str] = ()) -> List[Path]:
    """Where a run's program writes its metric files besides its output dir: the log folders and default_root_dir
    its LightningCLI config names (not its checkpoint folders), then `metrics_dirs` (relative to its workdir).
    `config`: the run's composed config as the store keeps it (JSON)."""
    from ..spec.lightning import has_own_folders, output_folders  # reads the YAML of --config files (PyYAML)

    # a config naming no `config` or `trainer` key is not parsed: output_folders would find nothing in it
    cfg = json.loads(config) if config and ('"config"' in config or '"trainer' in config) else {}
    args = cfg.get("args") if isinstance(cfg, dict) and not has_own_folders(cfg) else None  # own: below output/
    where = str(workdir or (cfg.get("workdir") if isinstance(cfg, dict) else None) or ".")
    found = [
        Path(f.path)
        for f in (output_folders(args, where) if isinstance(args, dict) else [])
        if not f.what.startswith("ModelCheckpoint")
    ]
    base = Path(where).expanduser()
    return found + [base / Path(d).expanduser() for d in metrics_dirs]


def _once(paths: List[Path]) -> List[Path]:
    """`paths` without a file met again through another root (a folder under another one, or a link to it)."""
    seen: Dict[str, Path] = {}
    for p in paths:
        seen.setdefault(os.path.realpath(p), p)
    return list(seen.values())


def run_series(
    run_dir: Path, attempts: int, unread: Optional[List[Path]] = None, extra_roots: Sequence[Path] = ()
) -> Dict[str, Series]:
    """The run's metrics by name. Event files found where tensorboard cannot be imported are not read: they are
    added to `unread` (when given) for the caller to say so."""
    layout = RunLayout(Path(run_dir))
    roots = search_roots(Path(run_dir), extra_roots)
    restarts = [layout.attempt(a).restarts() for a in range(1, attempts + 1)]
    found: Dict[str, Series] = {
        name: from_columns(name, "log", *cols) for name, cols in log_lines.run_columns(restarts).items()
    }
    files: Dict[str, List[log_lines.Points]] = {"csv": [csv_logs.read(p) for p in _once(csv_logs.find(roots))]}
    events = _once(tb_events.find(roots))
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
