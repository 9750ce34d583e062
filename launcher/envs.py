"""Job environments: `envs/<name>/pyproject.toml` uv projects, built with `uv sync` into envs/<name>/.venv.

An experiment names its environment (`env=uv env.name=tiny`); the job script sources
`envs/<name>/.venv/bin/activate` (launcher.validate.env_dir, templates/env.sh.j2). Environments are
looked up in ./envs (where danlu runs) first, then in danlu's own envs/ — the same order the job uses.
uv reads its own settings (UV_INDEX, UV_FIND_LINKS, uv.toml, ...), never pip's configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, TypedDict

from .errors import UserError
from .layout import safe_name


def roots() -> List[Path]:
    from .paths import envs_dir

    out: List[Path] = []
    for root in (Path.cwd() / "envs", envs_dir()):
        if root.is_dir() and root.resolve() not in [r.resolve() for r in out]:
            out.append(root)
    return out


def available() -> Dict[str, Path]:
    """{name: env dir} of every envs/<name>/pyproject.toml (./envs shadows danlu's own)."""
    found: Dict[str, Path] = {}
    for root in roots():
        for sub in sorted(root.iterdir()):
            if sub.name not in found and (sub / "pyproject.toml").is_file() and not sub.name.startswith((".", "_")):
                found[sub.name] = sub
    return found


def find(name: str) -> Path:
    if not safe_name(name):
        raise UserError(f"bad environment name {name!r}", "names are letters, digits, '.', '_' and '-' (envs/NAME)")
    envs = available()
    if name not in envs:
        listed = ", ".join(sorted(envs)) or "none yet"
        raise UserError(
            f"no environment named {name!r} (no envs/{name}/pyproject.toml)",
            f"environments: {listed}; `danlu env list` shows them, or create envs/{name}/pyproject.toml",
        )
    return envs[name]


def uv_binary() -> Optional[str]:
    """uv next to danlu's interpreter (pip install uv in the same venv), else on PATH."""
    here = Path(sys.executable).parent / "uv"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("uv")


def venv_python(env: Path) -> Path:
    return env / ".venv" / "bin" / "python"


def venv_version(env: Path) -> Optional[str]:
    """The Python version of envs/<name>/.venv from its pyvenv.cfg (no interpreter started)."""
    try:
        for line in (env / ".venv" / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version_info", "version"):
                return value.strip()
    except OSError:
        pass
    return None


def synced(env: Path) -> bool:
    return (env / ".venv" / "bin" / "activate").is_file()


def sync(name: str) -> Dict[str, object]:
    """`uv sync` in envs/<name>; uv's own output goes to stderr. Returns what was built."""
    env = find(name)
    uv = uv_binary()
    if uv is None:
        raise UserError("uv is not installed (`danlu env sync` runs `uv sync`)", "pip install uv")
    child_env = dict(os.environ)
    # the env is envs/<name>/.venv, whatever virtualenv danlu itself runs in
    for key in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"):
        child_env.pop(key, None)
    cmd = [uv, "sync", "--project", str(env)]
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=str(env), env=child_env, stdout=2)  # uv's output is a message: stderr
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"uv sync of envs/{name} failed (exit {done.returncode}); uv's messages are above")
    return {
        "name": name,
        "dir": str(env),
        "venv": str(env / ".venv"),
        "python": str(venv_python(env)),
        "python_version": venv_version(env),
        "seconds": round(seconds, 2),
    }


class EnvRow(TypedDict):
    """An environment as `danlu env list` shows it (--json: these keys)."""

    name: str
    dir: str
    synced: bool
    python_version: Optional[str]
    venv: str


def listing() -> List[EnvRow]:
    return [
        {
            "name": name,
            "dir": str(env),
            "synced": synced(env),
            "python_version": venv_version(env),
            "venv": str(env / ".venv"),
        }
        for name, env in sorted(available().items())
    ]
