"""Where the job's Python finds the frozen code first: PYTHONPATH entries inside the snapshot.

The snapshot's top comes first, then the snapshot's copy of every folder of the workdir that the job environment
puts on its import path itself: an editable install's `.pth` line (`src/` of a src layout) or the package folders
of an editable finder's mapping. PYTHONPATH precedes both, so the frozen copy wins over the live checkout.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Iterable, List, Optional


def site_dirs(env: Optional[Path]) -> List[Path]:
    """The site-packages folders of a virtualenv or conda prefix (none for an environment danlu cannot see)."""
    if env is None:
        return []
    return sorted(env.glob("lib/python3*/site-packages"))


def _pth_paths(pth: Path) -> List[Path]:
    try:
        lines = pth.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [Path(line.strip()) for line in lines if line.strip() and not line.startswith(("#", "import"))]


def _finder_paths(finder: Path) -> List[Path]:
    """The parent folders of the packages an editable finder (setuptools' `MAPPING = {...}`) maps."""
    try:
        tree = ast.parse(finder.read_text(errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "MAPPING" for t in node.targets):
            try:
                mapping = ast.literal_eval(node.value)
            except ValueError:
                return []
            return [Path(str(p)).parent for p in mapping.values()] if isinstance(mapping, dict) else []
    return []


def editable_roots(sites: Iterable[Path]) -> List[Path]:
    """Folders an environment's editable installs put on the import path."""
    roots: List[Path] = []
    for site in sites:
        for pth in sorted(site.glob("*.pth")):
            roots += _pth_paths(pth)
        for finder in sorted(site.glob("__editable___*_finder.py")):
            roots += _finder_paths(finder)
    return roots


def python_path(tree: Path, workdir: Path, sites: Iterable[Path]) -> List[str]:
    """The snapshot's PYTHONPATH entries: its top, then its copies of the workdir's editable roots."""
    out = [str(tree)]
    for root in editable_roots(sites):
        try:
            rel = os.path.relpath(root.resolve(), workdir)
        except ValueError:
            continue
        if rel.startswith("..") or os.path.isabs(rel):
            continue
        path = str(tree / rel) if rel != "." else str(tree)
        if path not in out:
            out.append(path)
    return out
