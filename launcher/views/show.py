"""`danlu show RUN`: everything needed to reproduce a run (config, script, command, git state, attempts)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict

from ..errors import UserError
from ..layout import RunLayout
from ..state.reconcile import refresh

ATTEMPT_FIELDS = ("attempt", "job_id", "state", "reason", "exit_code", "nodelist", "partition", "submitted", "started",
                  "ended", "elapsed", "restarts", "script", "command")


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


def show_data(store: Any, run: str) -> Dict[str, Any]:
    row = store.run(run)
    if row is None:
        raise UserError(f"no run named {run!r}", "`danlu status --all` lists runs (ids look like sweep/3)")
    refresh(store, store.latest(runs=[run]))  # the latest attempt's state as Slurm has it now
    sweep = store.sweep(row["sweep"])
    attempts = store.attempts(run)
    latest = attempts[-1]
    script = ""
    if latest["script"]:
        try:
            script = Path(latest["script"]).read_text()
        except OSError as e:
            script = f"(script unreadable: {e})"
    return {
        "run": row["run"], "sweep": row["sweep"], "experiment": sweep["experiment"] if sweep else None,
        "cluster": sweep["cluster"] if sweep else None, "overrides": json.loads(row["overrides"]),
        "config": json.loads(row["config"]), "run_dir": row["run_dir"], "workdir": row["workdir"],
        "git": {"commit": row["git_commit"], "dirty": None if row["git_dirty"] is None else bool(row["git_dirty"])},
        "command": latest["command"], "script_path": latest["script"],
        "submitted_with": json.loads(sweep["argv"]) if sweep else None,
        "launched": launched_commands(row["run_dir"], latest["attempt"]),
        "attempts": [{k: a[k] for k in ATTEMPT_FIELDS} | {"overrides": json.loads(a["overrides"] or "[]")}
                     for a in attempts],
        "script": script,
    }


def render_text(data: Dict[str, Any]) -> str:
    import yaml

    lines = [f"run:       {data['run']}", f"overrides: {' '.join(data['overrides'])}", f"run dir:   {data['run_dir']}",
             f"workdir:   {data['workdir']}"]
    git = data["git"]
    lines.append(f"git:       {git['commit'] or '(not a git checkout)'}{' (dirty)' if git['dirty'] else ''}")
    lines.append(f"command:   {data['command']}")
    for node, cmd in sorted(data["launched"].items()):
        lines.append(f"  {node}: {cmd}")
    lines.append("attempts:")
    for a in data["attempts"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(a["submitted"])) if a["submitted"] else "-"
        extra = f"  overrides: {' '.join(a['overrides'])}" if a["overrides"] else ""
        lines.append(f"  {a['attempt']}: job {a['job_id'] or '-'}  {a['state']}  {a['reason'] or ''}  submitted {when}"
                     f"  nodes {a['nodelist'] or '-'}  requeues {a['restarts'] or 0}{extra}")
    lines.append("config:")
    lines.append("  " + yaml.safe_dump(data["config"], sort_keys=False).replace("\n", "\n  ").rstrip())
    lines.append(f"script ({data['script_path']}):")
    return "\n".join(lines) + "\n" + data["script"]
