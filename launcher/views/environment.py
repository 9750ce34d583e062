"""The job environment a run's start ran in, as task 0 recorded it (launcher/job/environment.py): one line for
`danlu show`, and what changed between two records."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

LABEL = "environment  "
Change = Tuple[str, Optional[str], Optional[str]]  # (name, old, new): old None = added, new None = removed


def _lock(env: Dict[str, Any]) -> Optional[str]:
    lock = env.get("uv_lock")
    return str(lock.get("sha256")) if isinstance(lock, dict) and lock.get("sha256") else None


def _gpu_words(gpu: Any) -> str:
    if not isinstance(gpu, dict):
        return "no GPU driver"
    cuda = f" CUDA {gpu['cuda']}" if gpu.get("cuda") else ""
    return f"GPU driver {gpu.get('driver') or '?'}{cuda}"


def environment_lines(env: Optional[Dict[str, Any]]) -> List[str]:
    """`environment  Python 3.11.9 · 153 packages · uv.lock 1a2b3c4d5e6f · GPU driver 550.54.15 CUDA 12.4`, then
    where the interpreter is and which host recorded it; "not recorded yet" before a start recorded it."""
    if env is None:
        return [LABEL + "not recorded yet"]
    words: List[str] = []
    if env.get("error"):
        words.append(f"recorded in part ({env['error']})")
    if "packages" in env:
        packages = env.get("packages") or {}
        editable = len(env.get("editable") or {})
        words.append(f"Python {env.get('python') or '?'}")
        words.append(f"{len(packages)} packages" + (f" ({editable} editable)" if editable else ""))
    lock = _lock(env)
    words.append(f"uv.lock {lock[:12]}" if lock else "no uv.lock")
    words.append(_gpu_words(env.get("gpu")))
    lines = [LABEL + " · ".join(words)]
    where = " on ".join(str(env[k]) for k in ("executable", "host") if env.get(k))
    if where:
        lines.append(" " * len(LABEL) + where)
    return lines


def _key(name: str) -> str:
    """A distribution's name as the package index compares names (PyYAML and pyyaml are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _packages(env: Dict[str, Any]) -> Dict[str, Tuple[str, str]]:
    found = env.get("packages") or {}
    return {_key(name): (name, str(version)) for name, version in found.items()}


def package_changes(a: Dict[str, Any], b: Dict[str, Any]) -> List[Change]:
    """What differs from record `a` to record `b`: each package whose version differs, was added (old None) or
    removed (new None); the Python version as "python", the lock file's sha256 as "uv.lock". Sorted by name."""
    rows: List[Change] = []
    for name, old, new in (("python", a.get("python"), b.get("python")), ("uv.lock", _lock(a), _lock(b))):
        if old != new:
            rows.append((name, old, new))
    before, after = _packages(a), _packages(b)
    for key in before.keys() | after.keys():
        old_row, new_row = before.get(key), after.get(key)
        old, new = (old_row[1] if old_row else None), (new_row[1] if new_row else None)
        if old != new:
            rows.append(((new_row or old_row or (key, ""))[0], old, new))
    return sorted(rows, key=lambda row: (row[0].lower(), row[0]))
