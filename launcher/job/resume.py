"""Where a LightningCLI run resumes: the newest of danlu's stop checkpoint (the whole trainer, saved at a stop
signal by the callback in lightning_plugin/) and the program's own last*.ckpt in its ModelCheckpoint folders.

The node agent passes it as `--ckpt_path` after the program's other arguments, so that it wins over a `ckpt_path`
in the program's config; Lightning then restores it as from any checkpoint. Nothing here imports torch: a
checkpoint is judged by its file's time, and by the step the callback wrote beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

PLUGIN_DIR = str(Path(__file__).resolve().parent / "lightning_plugin")  # put on the program's PYTHONPATH


def resume_dirs(extra_config: Path) -> List[str]:
    """The ModelCheckpoint folders danlu's callback lists in the run's extra config (spec/lightning.extra_config)."""
    import yaml

    try:
        data = yaml.safe_load(extra_config.read_text())
        callbacks = data["trainer"]["callbacks"]
        dirs = callbacks[0]["init_args"]["resume_dirs"]
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return []
    return [str(d) for d in dirs] if isinstance(dirs, list) else []


def _mtime(path: Path) -> Optional[float]:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def newest_checkpoint(stop_checkpoint: Path, dirs: Sequence[str]) -> Optional[Dict[str, Any]]:
    """{path, what, step (None if unknown), written} of the newest checkpoint a start can resume from, or None."""
    found: List[Dict[str, Any]] = []
    written = _mtime(stop_checkpoint)
    if written is not None:
        try:
            step = json.loads(Path(f"{stop_checkpoint}.json").read_text()).get("step")
        except (OSError, ValueError, AttributeError):
            step = None
        found.append(dict(path=str(stop_checkpoint), what="danlu's stop checkpoint", step=step, written=written))
    for folder in dirs:
        try:
            names = sorted(n for n in os.listdir(folder) if n.startswith("last") and n.endswith(".ckpt"))
        except OSError:
            continue
        for name in names:
            path = Path(folder) / name
            when = _mtime(path)
            if when is not None:
                found.append(dict(path=str(path), what=f"the program's {name}", step=None, written=when))
    return max(found, key=lambda c: c["written"]) if found else None


def with_python_path(env: Dict[str, str]) -> None:
    """danlu's callback module importable by the program (its folder first, the job's own PYTHONPATH after it)."""
    env["PYTHONPATH"] = PLUGIN_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
