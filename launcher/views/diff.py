"""`danlu diff RUN_A RUN_B`: what differs between two runs' latest attempts: the resolved config (dotted keys), the
frozen code (a unified diff of the snapshots, launcher/code/read.py) and the job environment (Python, packages,
uv.lock). Each section is there only when it has something to say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..code.read import StoredSnapshot, file_diffs, snapshot_of
from ..errors import UserError
from ..layout import RunLayout
from .environment import package_changes


class _Absent:
    """A key or package one run does not have ("<absent>"; null in --json)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()


def find_run(store: Any, name: str) -> Any:
    """The latest attempt's row (view "full") of a run; a sweep's name, or a name that is neither, is bad input."""
    rows = store.latest(runs=[name])
    if rows:
        return rows[0]
    runs = [r["run"] for r in store.latest(sweeps=[name])] if store.sweep(name) else []
    if runs:
        raise UserError(
            f"{name!r} is a sweep, not a run: diff compares two runs",
            f"danlu diff {runs[0]} {runs[1] if len(runs) > 1 else 'OTHER_RUN'}  (`danlu status {name}` lists its runs)",
        )
    raise UserError(f"no run named {name!r}", "`danlu status --all` lists runs (ids look like sweep/3)")


def flatten(config: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    """(dotted key, value) of every leaf of a config: a dict's keys joined with '.', a list or scalar a leaf."""
    if isinstance(config, dict) and config:
        for k, v in config.items():
            yield from flatten(v, f"{prefix}{k}.")
    elif prefix:
        yield prefix[:-1], config


def changes(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, List[Any]]:
    """key -> [value in a, value in b] of the keys whose values differ (ABSENT where one side lacks the key)."""
    keys = dict.fromkeys(list(a) + list(b))
    return {k: [a.get(k, ABSENT), b.get(k, ABSENT)] for k in keys if a.get(k, ABSENT) != b.get(k, ABSENT)}


def config_changes(row_a: Any, row_b: Any) -> Dict[str, List[Any]]:
    return changes(dict(flatten(json.loads(row_a["config"]))), dict(flatten(json.loads(row_b["config"]))))


def environment_changes(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]]) -> Dict[str, List[Any]]:
    """name -> [a, b] of the Python version, the packages and the uv.lock hash that differ ({} when a run recorded
    no environment)."""
    if a is None or b is None:
        return {}
    return {
        name: [ABSENT if old is None else old, ABSENT if new is None else new]
        for name, old, new in package_changes(a, b)
    }


def environment_of(row: Any) -> Optional[Dict[str, Any]]:
    return RunLayout(Path(row["run_dir"])).attempt(int(row["attempt"])).read_environment()


def _code_data(row_a: Any, row_b: Any) -> Dict[str, Any]:
    """The code section: both keys, each differing file's status and the unified diff (and the snapshots read)."""
    data: Dict[str, Any] = {"a": row_a["code"], "b": row_b["code"], "files": {}, "diff": []}
    snaps = (snapshot_of(row_a), snapshot_of(row_b))
    if row_a["code"] != row_b["code"] and snaps[0] is not None and snaps[1] is not None:
        diffs = file_diffs(snaps[0], snaps[1])
        data["files"] = {d.path: d.status for d in diffs}
        data["diff"] = [line for d in diffs for line in d.lines]
        data["stat"] = [f"{d.path} | {'binary' if d.binary else f'+{d.added} -{d.removed}'}" for d in diffs]
    data["snapshots"] = snaps
    return data


def diff_data(store: Any, name_a: str, name_b: str) -> Dict[str, Any]:
    """What differs between two runs (their latest attempts), section by section."""
    row_a, row_b = find_run(store, name_a), find_run(store, name_b)
    env_a, env_b = environment_of(row_a), environment_of(row_b)
    return {
        "runs": [row_a["run"], row_b["run"]],
        "config": config_changes(row_a, row_b),
        "code": _code_data(row_a, row_b),
        "environment": environment_changes(env_a, env_b),
        "not_recorded": [r["run"] for r, e in ((row_a, env_a), (row_b, env_b)) if e is None],
    }


def _plain(v: Any) -> Any:
    return None if v is ABSENT else v


def as_json(data: Dict[str, Any]) -> Dict[str, Any]:
    """What --json prints: {config, code: {a, b, files, diff}, environment, not_recorded} (absent values: null)."""
    code = {k: data["code"][k] for k in ("a", "b", "files", "diff")}
    pairs = {s: {k: [_plain(x) for x in v] for k, v in data[s].items()} for s in ("config", "environment")}
    return {**pairs, "code": code, "not_recorded": data["not_recorded"], "runs": data["runs"]}


def _value(v: Any) -> str:
    return "<absent>" if v is ABSENT else v if isinstance(v, str) else json.dumps(v)


def _pair_lines(pairs: Dict[str, List[Any]]) -> List[str]:
    return [f"  {k}: {_value(a)} -> {_value(b)}" for k, (a, b) in pairs.items()]


def _missing_code(runs: Sequence[str], keys: Sequence[Optional[str]], snaps: Sequence[Any]) -> List[str]:
    """Why a run's code cannot be compared: it ran its live workdir, or its snapshot is gone."""
    out = []
    for run, key, snap in zip(runs, keys, snaps, strict=True):
        if not key:
            out.append(f"  {run} ran its live workdir (code.freeze=false): no snapshot to compare")
        elif snap is None:
            out.append(f"  {run}: snapshot {key[:12]} was removed by danlu gc")
    return out


def code_lines(data: Dict[str, Any], stat: bool = False) -> List[str]:
    """The code section's lines (none when both runs ran their live workdir)."""
    code = data["code"]
    keys: Tuple[Optional[str], Optional[str]] = (code["a"], code["b"])
    if keys == (None, None):
        return []
    if keys[0] == keys[1]:
        return ["code", f"  same snapshot {str(keys[0])[:12]}"]
    snaps: Tuple[Optional[StoredSnapshot], ...] = code["snapshots"]
    missing = _missing_code(data["runs"], keys, snaps)
    if missing:
        return ["code"] + missing
    head = ["code", f"  snapshot {str(keys[0])[:12]} -> {str(keys[1])[:12]}"]
    if not code["diff"]:
        return head + ["  the same files (the snapshots differ in their workdir, commit or uncommitted paths)"]
    return head + ([f"  {line}" for line in code["stat"]] if stat else code["diff"])


def render_text(data: Dict[str, Any], stat: bool = False) -> str:
    """The sections that have something: config, code, environment."""
    lines: List[str] = []
    if data["config"]:
        lines += ["config"] + _pair_lines(data["config"])
    lines += code_lines(data, stat)
    if data["environment"] or data["not_recorded"]:
        lines += ["environment"] + _pair_lines(data["environment"])
        lines += [f"  not recorded for {run}" for run in data["not_recorded"]]
    return "".join(line + "\n" for line in lines)
