"""Where danlu's own files live: the bundled config tree, templates, examples and the user's store."""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _bundled(name: str) -> Path:
    """A top-level folder of the repository (editable install) or its copy inside the wheel."""
    repo = _PKG.parent / name
    if repo.is_dir():
        return repo
    return _PKG / "_data" / name


def jobs_dir() -> Path:
    return _bundled("jobs")


def templates_dir() -> Path:
    return _bundled("templates")


def examples_dir() -> Path:
    return _bundled("examples")


def envs_dir() -> Path:
    return _bundled("envs")


def repo_root() -> Path:
    return _PKG.parent


def data_home() -> Path:
    """Per-user data directory: $DANLU_HOME, else $XDG_DATA_HOME/danlu, else ~/.local/share/danlu."""
    if os.environ.get("DANLU_HOME"):
        return Path(os.environ["DANLU_HOME"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "danlu"


def cache_dir() -> Path:
    """What danlu may throw away and rebuild (the metrics read from logs): $DANLU_HOME/cache, else
    $XDG_CACHE_HOME/danlu, else ~/.cache/danlu."""
    if os.environ.get("DANLU_HOME"):
        return Path(os.environ["DANLU_HOME"]).expanduser() / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "danlu"


def user_config_dir() -> Path:
    """Per-user configs (the default cluster, own experiments): $XDG_CONFIG_HOME/danlu/jobs."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "danlu"
