"""`danlu show RUN`: everything needed to reproduce a run (config, script, command, git state, attempts)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List

from ..backends import batch_output, for_record
from ..code.read import facts
from ..errors import UserError
from ..layout import RunLayout
from ..state.reconcile import refresh
from ..words import counted
from .environment import environment_lines

ATTEMPT_FIELDS = (
    "attempt",
    "job_id",
    "state",
    "final",
    "reason",
    "exit_code",
    "nodelist",
    "partition",
    "submitted",
    "started",
    "ended",
    "elapsed",
    "restarts",
    "script",
    "command",
)


def accounting_records(raw: str | None) -> List[Dict[str, str]]:
    """The attempt's accounting records as sacct gave them (one per start of the job), field by field."""
    from ..slurm import SACCT_FORMAT

    names = [f.split("%")[0] for f in SACCT_FORMAT.split(",")]
    return [dict(zip(names, line.split("|"), strict=False)) for line in (raw or "").splitlines() if line.strip()]


def launched_commands(run_dir: str, attempt: int) -> Dict[str, str]:
    """The command each node's agent really started in the attempt's latest restart (ranks, head and port filled in)."""
    out: Dict[str, str] = {}
    latest = RunLayout(Path(run_dir)).attempt(attempt).latest()
    for tag, f in (latest.agent_logs() if latest else {}).items():
        try:
            for line in f.read_text(errors="replace").splitlines():
                if "] command: " in line:
                    out[tag] = line.split("] command: ", 1)[1]
        except OSError:
            continue
    return out


def starts(run_dir: str, attempt: int) -> List[Dict[str, Any]]:
    """Each start (restart) of an attempt that recorded where it resumed (LightningCLI runs): {restart, resumed}."""
    out: List[Dict[str, Any]] = []
    for r in RunLayout(Path(run_dir)).attempt(attempt).restarts():
        if r.resumed_from.exists():
            out.append({"restart": r.number, "resumed": r.read_resumed_from()})
    return out


def _lightning_config(layout: RunLayout, attempt: int) -> str | None:
    """The extra --config danlu wrote for a LightningCLI run's attempt (its own folders, danlu's callback)."""
    try:
        path = layout.lightning_config(attempt)
    except ValueError:  # a run folder not named by its index
        return None
    return str(path) if path.exists() else None


def _start_line(start: Dict[str, Any]) -> str:
    found = start["resumed"]
    if not found:
        return f"     start {start['restart']}: from step 0 (no checkpoint of the run yet)"
    step = f" at step {found['step']}" if found.get("step") is not None else ""
    return f"     start {start['restart']}: resumed from {found['what']}{step}: {found['path']}"


def _fetch_accounting(store: Any, row: Any, attempts: List[Any]) -> None:
    """Every attempt's accounting records as sacct has them now (one call), kept in the store: a state may have
    become final from squeue's answer before accounting had the job, and a later look still shows the records
    when slurmdbd is down (or the records expired)."""
    from .. import slurm

    if not for_record(row).in_slurm:
        return
    ids = [a["job_id"] for a in attempts if a["job_id"]]
    try:
        acct = slurm.sacct(ids) if ids else {}
    except slurm.SlurmUnavailable:
        return
    store.record_accounting(
        row["run"],
        {a["attempt"]: acct[a["job_id"]].raw for a in attempts if a["job_id"] in acct and acct[a["job_id"]].raw},
    )


def effective_overrides(run_overrides: List[str], attempt_overrides: List[str]) -> List[str]:
    """The overrides the latest attempt ran with: the run's, with a rerun's given again replacing them (a store
    written before reruns recorded them into the run's row keeps them apart)."""

    def key(o: str) -> str:
        return o.split("=", 1)[0].lstrip("+~")

    again = {key(o) for o in attempt_overrides}
    return [o for o in run_overrides if key(o) not in again] + attempt_overrides


def set_by_overrides(overrides: List[str], config: Dict[str, Any]) -> List[List[Any]]:
    """[key, value] of every key the overrides set, the value as the run's config has it (config groups such as
    experiment=... as chosen; a deleted key as None): what differs from the experiment's own config."""
    out: List[List[Any]] = []
    for o in overrides:
        key, eq, given = o.partition("=")
        key = key.lstrip("+~")
        if key.startswith("hydra."):
            continue
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        # a group's choice (experiment=tiny_dpo, resources=big) is a name, not the key's value in the config
        out.append([key, given if eq and "." not in key and isinstance(node, dict) else node])
    return out


def _find_run(store: Any, run: str) -> Any:
    """The run's row; a sweep's name, or a name that is neither, is bad input."""
    row = store.run(run)
    if row is not None:
        return row
    runs = [r["run"] for r in store.latest(sweeps=[run])] if store.sweep(run) else []
    if runs:  # a sweep's name where one run is wanted
        shown = ", ".join(runs[:3]) + (", ..." if len(runs) > 3 else "")
        raise UserError(
            f"{run!r} is a sweep, not a run: show takes one of its runs ({shown})",
            f"danlu show {runs[0]}  (`danlu status {run}` lists its runs)",
        )
    raise UserError(f"no run named {run!r}", "`danlu status --all` lists runs (ids look like sweep/3)")


def _script_text(path: str | None) -> str:
    """The batch script's text as submitted ("" without one; what went wrong where it cannot be read)."""
    if not path:
        return ""
    try:
        return Path(path).read_text()
    except OSError as e:
        return f"(script unreadable: {e})"


def _paths(row: Any, latest: Any, config: Dict[str, Any]) -> Dict[str, Any]:
    """Where the run's files are: its folder, the latest attempt's logs, its output, script and Slurm's output."""
    layout = RunLayout(Path(row["run_dir"]))
    output = (config.get("args") or {}).get(config.get("output_arg") or "") or layout.output_dir
    return {
        "run_dir": row["run_dir"],
        "logs": str(layout.attempt(latest["attempt"]).root),
        "output": str(output),
        "script": latest["script"],
        "slurm_output": str(batch_output(row, latest["job_id"]) or "") or None,
        "lightning_config": _lightning_config(layout, latest["attempt"]),
    }


def _attempt_data(run_dir: str, a: Any) -> Dict[str, Any]:
    """One attempt as shown: its store fields, the overrides of its rerun, sacct's records and its starts."""
    return {k: a[k] for k in ATTEMPT_FIELDS} | {
        "final": bool(a["final"]),
        "overrides": json.loads(a["overrides"] or "[]"),
        "accounting": accounting_records(a["accounting"]),
        "starts": starts(run_dir, a["attempt"]),
    }


def show_data(store: Any, run: str) -> Dict[str, Any]:
    """Everything `danlu show` says of a run (what --json prints), its state asked of Slurm first."""
    row = _find_run(store, run)
    refresh(store, store.latest(runs=[run]))  # the latest attempt's state as Slurm has it now
    sweep = store.sweep(row["sweep"])
    _fetch_accounting(store, row, store.attempts(run))
    attempts = store.attempts(run)
    latest = attempts[-1]
    config = json.loads(row["config"])
    overrides = effective_overrides(json.loads(row["overrides"]), json.loads(latest["overrides"] or "[]"))
    return {
        "run": row["run"],
        "sweep": row["sweep"],
        "experiment": sweep["experiment"] if sweep else None,
        "cluster": sweep["cluster"] if sweep else None,
        "state": latest["state"],
        "final": bool(latest["final"]),
        "overrides": overrides,
        "set_by_overrides": set_by_overrides(overrides, config),
        "config": config,
        "run_dir": row["run_dir"],
        "workdir": row["workdir"],
        "git": {"commit": row["git_commit"], "dirty": None if row["git_dirty"] is None else bool(row["git_dirty"])},
        "code": facts(latest["code"], row["run_dir"]),
        "command": latest["command"],
        "script_path": latest["script"],
        "paths": _paths(row, latest, config),
        "submitted_with": json.loads(sweep["argv"]) if sweep else None,
        "launched": launched_commands(row["run_dir"], latest["attempt"]),
        "environment": RunLayout(Path(row["run_dir"])).attempt(latest["attempt"]).read_environment(),
        "attempts": [_attempt_data(row["run_dir"], a) for a in attempts],
        "script": _script_text(latest["script"]),
    }


def _value(v: Any) -> str:
    return "(deleted)" if v is None else v if isinstance(v, str) else json.dumps(v)


def _heading(data: Dict[str, Any]) -> List[str]:
    """The run with its sweep, experiment and cluster; its state and which attempt of how many."""
    last = data["attempts"][-1]
    where = ", ".join(f"{k} {data[k]}" for k in ("sweep", "experiment", "cluster") if data.get(k))
    return [
        f"run        {data['run']}" + (f"  ({where})" if where else ""),
        f"state      {data['state']}{'' if data['final'] else ' (not final)'}"
        f"  attempt {last['attempt']} of {len(data['attempts'])}",
    ]


def _attempt_cells(attempts: List[Dict[str, Any]]) -> List[List[str]]:
    """Each attempt's number, job id, state, submit time and nodes, padded to the widest of each column."""
    table = [
        [
            f"{a['attempt']}",
            a["job_id"] or "-",
            a["state"],
            time.strftime("%Y-%m-%d %H:%M", time.localtime(a["submitted"])) if a["submitted"] else "-",
            a["nodelist"] or "-",
        ]
        for a in attempts
    ]
    widths = [max(len(cells[k]) for cells in table) for k in range(5)]
    return [[c.ljust(w) for c, w in zip(cells, widths, strict=True)] for cells in table]


def _attempt_lines(attempts: List[Dict[str, Any]], full: bool) -> List[str]:
    """A line per attempt (with its requeues, why it ended and its rerun's overrides), then a line per start that
    resumed; `full`: sacct's records of it too."""
    lines: List[str] = []
    for a, cells in zip(attempts, _attempt_cells(attempts), strict=True):
        if a["restarts"]:
            cells.append(f"requeued {a['restarts']}x")
        if a["reason"]:
            cells.append(a["reason"])
        if a["overrides"]:
            cells.append("rerun with " + " ".join(a["overrides"]))
        lines.append("  " + "  ".join(cells).rstrip())
        lines.extend(_start_line(start) for start in a["starts"])
        for record in a["accounting"] if full else ():  # sacct's own words, one record per start
            lines.append("     sacct: " + " ".join(f"{k}={v}" for k, v in record.items() if v not in ("", "Unknown")))
    return lines


def _git_line(data: Dict[str, Any]) -> str:
    git = data["git"]
    return (
        f"git        {git['commit'][:12] if git['commit'] else '(not a git checkout)'}"
        f"{' (dirty)' if git['dirty'] else ''}  {data['workdir']}"
    )


def code_line(code: Dict[str, Any] | None) -> str:
    """The code the latest attempt ran: its snapshot, commit and how many files differed from it; or the live
    workdir; or a snapshot `danlu gc` removed."""
    if code is None:
        return "code       the live workdir (code.freeze=false)"
    head = f"code       snapshot {code['snapshot'][:12]}"
    if code["tree"] is None:
        return f"{head} · removed by danlu gc"
    if code["commit"] is None:
        return f"{head} · not in git"
    changed = len(code["changed"] or [])
    state = f"{counted(changed, 'uncommitted file')}" if changed else "clean"
    return f"{head} · commit {code['commit'][:10]} · {state}"


PATH_LABELS = (
    ("run dir", "run_dir"),
    ("logs", "logs"),
    ("output", "output"),
    ("script", "script"),
    ("slurm out", "slurm_output"),
    ("extra cfg", "lightning_config"),
)


def _whole(data: Dict[str, Any]) -> str:
    """What --full adds at the end: the whole resolved config and the batch script."""
    import yaml

    config = "  " + yaml.safe_dump(data["config"], sort_keys=False).replace("\n", "\n  ").rstrip()
    script: str = data["script"]  # the batch script's text, as submitted
    return f"config (whole, resolved):\n{config}\nscript ({data['script_path']}):\n{script}"


def render_text(data: Dict[str, Any], full: bool = False) -> str:
    """What a researcher reads first: the run and its state, each attempt and why it ended, the command, what the
    overrides set, the git state and where the files are. `full`: also each node's launched command, sacct's
    records, the whole config (with the cluster profile) and the batch script, at the end."""
    lines = _heading(data) + ["attempts"] + _attempt_lines(data["attempts"], full)
    lines.append(f"command    {data['command']}")
    for node, cmd in sorted(data["launched"].items()) if full else ():
        lines.append(f"  {node}: {cmd}")
    lines.append("config     set by the overrides (the whole config: --full, --json)")
    width = max((len(k) for k, _ in data["set_by_overrides"]), default=0)
    lines.extend(f"  {k + ':':<{width + 1}} {_value(v)}" for k, v in data["set_by_overrides"])
    lines.append(_git_line(data))
    lines.append(code_line(data.get("code")))
    lines.extend(environment_lines(data.get("environment")))
    lines.append("paths")
    lines.extend(f"  {label:<9}  {data['paths'][key]}" for label, key in PATH_LABELS if data["paths"].get(key))
    return "\n".join(lines) + "\n" + (_whole(data) if full else "")
