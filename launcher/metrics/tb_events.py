"""Metrics from TensorBoard event files (`events.out.tfevents.*`): Lightning's TensorBoardLogger, DiffusionDPO's
`--report_to tensorboard` (accelerate's tracker), anything written with `SummaryWriter.add_scalar` or
`tf.summary.scalar`. Read with tensorboard's own event loader, imported only when a run has event files (the
`report` extra: `pip install 'danlu[report]'`). Each start of a run writes a new file (or a new version folder);
files are read in the order they were started, so a step trained again after a resume keeps its latest value."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .log_lines import NOT_METRICS, Points

MARK = "tfevents"
MAX_DEPTH = 5  # folders down from the output dir: tensorboard/version_N/ is 2, logs/<project>/ (accelerate) 2
_STARTED = re.compile(r"tfevents\.(\d+(?:\.\d+)?)")  # events.out.tfevents.<unix time>.<host>...


def available() -> bool:
    """Whether tensorboard's event reader can be imported here."""
    try:
        import tensorboard.backend.event_processing.event_file_loader  # noqa: F401
    except ImportError:
        return False
    return True


def find(roots: Iterable[Path], max_depth: int = MAX_DEPTH) -> List[Path]:
    """Event files under each root, at most `max_depth` folders down, oldest start first (the time in the name,
    then the path); checkpoint folders are not entered."""
    found: List[Path] = []
    for root in roots:
        root = Path(root)
        base = len(root.parts)
        for folder, dirs, files in os.walk(root):
            depth = len(Path(folder).parts) - base
            dirs[:] = [] if depth >= max_depth else [d for d in dirs if not d.startswith("checkpoint")]
            found.extend(Path(folder) / f for f in files if MARK in f and not f.endswith((".tmp", ".lock")))
    return sorted(found, key=_start_key)


def _start_key(path: Path) -> Tuple[float, str]:
    m = _STARTED.search(path.name)
    return (float(m.group(1)) if m else float("inf"), str(path))


def read(path: Path) -> Points:
    """{tag: [(step, value, wall time), ...]} of the scalars in one event file, in the order written (not the
    counters Lightning logs beside the metrics, such as `epoch`). A file cut short (its writer still running, or
    killed) gives what it has."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    out: Points = {}
    plugins: Dict[str, str] = {}  # tag -> the plugin its first value named (later values may not name one)
    try:
        for event in EventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name:
                    plugins.setdefault(v.tag, v.metadata.plugin_data.plugin_name)
                value = None if v.tag in NOT_METRICS else _scalar(v, plugins.get(v.tag), tensor_util)
                if value is not None:
                    out.setdefault(v.tag, []).append((int(event.step), value, float(event.wall_time)))
    except Exception:  # noqa: BLE001 -- a damaged file: keep what was read before the damage
        return out
    return out


def _scalar(v: Any, plugin: Optional[str], tensor_util: Any) -> Optional[float]:  # tensorboard: no stubs
    kind = v.WhichOneof("value")
    if kind == "simple_value":
        return float(v.simple_value)
    if kind != "tensor" or plugin not in (None, "scalars"):
        return None
    array = tensor_util.make_ndarray(v.tensor)
    if array.size != 1 or array.dtype.kind not in "fiu":
        return None
    return float(array.reshape(()))
