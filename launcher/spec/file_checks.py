"""What the files say about a run before it is queued, on a shared filesystem: its workdir and program, its
environment, the names of its variables, its webhook's reference."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

from ..errors import UserError
from .options import EnvSpec, RunSpec

_ENV_WORKDIR = re.compile(r"""^workdir:\s*["']?\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)(?:,\s*["']?([^'"}]*))?""", re.M)
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


def env_dir(spec: RunSpec) -> Optional[Path]:
    """The virtualenv a uv/venv env activates (None for none/conda-by-name)."""
    from ..paths import envs_dir

    e = spec.env
    if e.path:
        return Path(e.path).expanduser()
    if e.kind == "uv" and e.name:
        for root in (Path.cwd() / "envs", envs_dir()):
            if (root / e.name).is_dir():
                return root / e.name / ".venv"
        return envs_dir() / e.name / ".venv"
    return None


def _workdir_hint(experiment: str, workdir: Path) -> str:
    """What to set for a missing workdir: the environment variable the experiment's config reads it from
    (workdir: ${oc.env:NAME,default}), when that is where this workdir came from; else workdir=."""
    import os

    from .config_groups import search_dirs

    for d in reversed(search_dirs()):  # the last dir wins, as in composition
        f = d / "experiment" / f"{experiment}.yaml"
        if not f.is_file():
            continue
        found = _ENV_WORKDIR.search(f.read_text(errors="replace"))
        if not found:
            break
        name, default = found.group(1), found.group(2) or ""
        if Path(os.environ.get(name) or default).expanduser() != workdir:
            break  # workdir=... was given: the variable is not where this one came from
        said = f"{name}={os.environ[name]} is not a folder" if os.environ.get(name) else f"{name} is not set"
        return (
            f"experiment {experiment} takes its workdir from ${name} ({said}): export {name}=/path/to/your/checkout, "
            "or set workdir=/path/to/your/checkout"
        )
    return "set workdir=/path/to/your/checkout"


def file_problems(spec: RunSpec) -> List[UserError]:
    """Things missing on a shared filesystem: workdir, program, environment."""
    problems: List[UserError] = []
    if not spec.cluster.shared_fs:
        return problems
    problems.extend(_workdir_problems(spec))
    e = spec.env
    if e.kind in ("uv", "venv"):
        problems.extend(_venv_problems(spec))
    if e.kind == "conda" and not (e.name or e.path):
        problems.append(UserError("env.kind=conda needs env.name or env.path", "set env.name=myenv"))
    problems.extend(_variable_problems(e))
    if spec.notify.url:
        from ..webhook import WebhookError, resolve

        try:
            resolve(spec.notify.url)
        except WebhookError as e:
            problems.append(UserError(e.message, e.hint))
    return problems


def _workdir_problems(spec: RunSpec) -> List[UserError]:
    """A workdir that is no folder, or a program not in it."""
    workdir = Path(spec.workdir).expanduser()
    if not workdir.is_dir():
        return [UserError(f"workdir {str(workdir)!r} does not exist", _workdir_hint(spec.experiment, workdir))]
    if spec.program and not (workdir / Path(spec.program).expanduser()).exists():
        return [UserError(f"program {spec.program!r} not found in {str(workdir)!r}", "check program= and workdir=")]
    return []


def _venv_problems(spec: RunSpec) -> List[UserError]:
    """A uv or venv environment that is not named, not declared (envs/NAME/pyproject.toml) or not made."""
    e = spec.env
    venv = env_dir(spec)
    if venv is None:
        if e.kind == "venv":
            return [UserError("env.kind=venv needs env.path", "set env.path=/path/to/.venv")]
        return [
            UserError(
                "env.kind=uv needs env.name or env.path", "set env.name=NAME (envs/NAME) or env.path=/path/to/.venv"
            )
        ]
    if e.kind == "uv" and e.name and not e.path and not (venv.parent / "pyproject.toml").is_file():
        from ..envs import available

        names = ", ".join(sorted(available())) or "none yet"
        return [
            UserError(
                f"no environment named {e.name!r} (no envs/{e.name}/pyproject.toml)",
                f"environments: {names} (`danlu env list`); or create envs/{e.name}/pyproject.toml",
            )
        ]
    if not (venv / "bin" / "activate").exists():
        named = e.kind == "uv" and e.name and not e.path  # envs/NAME; otherwise the path is what was chosen
        hint = f"danlu env sync {e.name}" if named else f"create the virtualenv at {venv} (python -m venv {venv})"
        what = f"environment {e.name!r}" if named else f"env.kind={e.kind} environment at {str(venv)!r}"
        return [UserError(f"{what} is missing ({venv} has no bin/activate)", hint)]
    return []


def _variable_problems(e: EnvSpec) -> List[UserError]:
    """Variable names the shell would refuse, and secrets (env.pass_env) written as values into the script."""
    problems: List[UserError] = []
    for key in e.vars:
        if not _VARIABLE.match(key):
            problems.append(
                UserError(f"env.vars has an invalid variable name {key!r}", "names are letters, digits and _")
            )
    for key in sorted(set(e.vars) & set(e.pass_env)):
        problems.append(
            UserError(
                f"env.vars.{key} would write a secret into the job script",
                f"export {key} in your shell instead; it is passed to the job by name (env.pass_env)",
            )
        )
    for key in e.pass_env:
        if not _VARIABLE.match(key):
            problems.append(
                UserError(f"env.pass_env has an invalid variable name {key!r}", "names are letters, digits and _")
            )
    return problems
