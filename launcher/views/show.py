"""`danlu show RUN`: everything needed to reproduce a run (config, script, command, git state, attempts)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List

from ..errors import UserError
from ..layout import RunLayout
from ..state.reconcile import refresh

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
    return [dict(zip(names, line.split("|"))) for line in (raw or "").splitlines() if line.strip()]


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


def _fetch_accounting(store: Any, run: str, attempts: List[Any]) -> None:
    """Every attempt's accounting records as sacct has them now (one call), kept in the store: a state may have
    become final from squeue's answer before accounting had the job, and a later look still shows the records
    when slurmdbd is down (or the records expired)."""
    from .. import slurm

    ids = [a["job_id"] for a in attempts if a["job_id"] and not a["job_id"].startswith("local-")]
    try:
        acct = slurm.sacct(ids) if ids else {}
    except slurm.SlurmUnavailable:
        return
    store.record_accounting(
        run, {a["attempt"]: acct[a["job_id"]].raw for a in attempts if a["job_id"] in acct and acct[a["job_id"]].raw}
    )


def show_data(store: Any, run: str) -> Dict[str, Any]:
    row = store.run(run)
    if row is None:
        raise UserError(f"no run named {run!r}", "`danlu status --all` lists runs (ids look like sweep/3)")
    refresh(store, store.latest(runs=[run]))  # the latest attempt's state as Slurm has it now
    sweep = store.sweep(row["sweep"])
    _fetch_accounting(store, run, store.attempts(run))
    attempts = store.attempts(run)
    latest = attempts[-1]
    script = ""
    if latest["script"]:
        try:
            script = Path(latest["script"]).read_text()
        except OSError as e:
            script = f"(script unreadable: {e})"
    return {
        "run": row["run"],
        "sweep": row["sweep"],
        "experiment": sweep["experiment"] if sweep else None,
        "cluster": sweep["cluster"] if sweep else None,
        "overrides": json.loads(row["overrides"]),
        "config": json.loads(row["config"]),
        "run_dir": row["run_dir"],
        "workdir": row["workdir"],
        "git": {"commit": row["git_commit"], "dirty": None if row["git_dirty"] is None else bool(row["git_dirty"])},
        "command": latest["command"],
        "script_path": latest["script"],
        "submitted_with": json.loads(sweep["argv"]) if sweep else None,
        "launched": launched_commands(row["run_dir"], latest["attempt"]),
        "attempts": [
            {k: a[k] for k in ATTEMPT_FIELDS}
            | {
                "final": bool(a["final"]),
                "overrides": json.loads(a["overrides"] or "[]"),
                "accounting": accounting_records(a["accounting"]),
            }
            for a in attempts
        ],
        "script": script,
    }


def render_text(data: Dict[str, Any]) -> str:
    import yaml

    lines = [
        f"run:       {data['run']}",
        f"overrides: {' '.join(data['overrides'])}",
        f"run dir:   {data['run_dir']}",
        f"workdir:   {data['workdir']}",
    ]
    git = data["git"]
    lines.append(f"git:       {git['commit'] or '(not a git checkout)'}{' (dirty)' if git['dirty'] else ''}")
    lines.append(f"command:   {data['command']}")
    for node, cmd in sorted(data["launched"].items()):
        lines.append(f"  {node}: {cmd}")
    lines.append("attempts:")
    for a in data["attempts"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(a["submitted"])) if a["submitted"] else "-"
        extra = f"  overrides: {' '.join(a['overrides'])}" if a["overrides"] else ""
        lines.append(
            f"  {a['attempt']}: job {a['job_id'] or '-'}  {a['state']}{'' if a['final'] else ' (not final)'}"
            f"  {a['reason'] or ''}  submitted {when}  nodes {a['nodelist'] or '-'}"
            f"  requeues {a['restarts'] or 0}{extra}"
        )
        for record in a["accounting"]:  # sacct's own words, one record per start
            lines.append("     sacct: " + " ".join(f"{k}={v}" for k, v in record.items() if v not in ("", "Unknown")))
    lines.append("config:")
    lines.append("  " + yaml.safe_dump(data["config"], sort_keys=False).replace("\n", "\n  ").rstrip())
    lines.append(f"script ({data['script_path']}):")
    script: str = data["script"]  # the batch script's text, as submitted
    return "\n".join(lines) + "\n" + script
