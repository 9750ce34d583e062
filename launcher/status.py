"""`danlu status`: the store reconciled with Slurm, one sacct (+ at most one squeue) per refresh."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import slurm
from .classify import classify, tail_lines
from .store import ACTIVE, TERMINAL, Store

SHORT = {"PENDING": "PD", "RUNNING": "R", "COMPLETING": "CG", "COMPLETED": "CD", "FAILED": "F", "CANCELLED": "CA",
         "TIMEOUT": "TO", "OUT_OF_MEMORY": "OOM", "NODE_FAIL": "NF", "PREEMPTED": "PR", "BOOT_FAIL": "BF",
         "DEADLINE": "DL", "REQUEUED": "RQ", "SUSPENDED": "S", "CONFIGURING": "CF", "UNKNOWN": "?",
         "SUBMITTING": "SB", "REQUEUE_HOLD": "RH", "UNSUBMITTED": "NS"}


def attempt_dir(run_dir: str, attempt: int) -> Path:
    return Path(run_dir) / "logs" / f"attempt-{attempt}"


def _result(run_dir: str, attempt: int) -> Optional[Dict[str, Any]]:
    try:
        return json.loads((attempt_dir(run_dir, attempt) / "result.json").read_text())
    except (OSError, ValueError):
        return None


def log_files(row: Any) -> List[Path]:
    d = attempt_dir(row["run_dir"], row["attempt"])
    files = sorted(d.glob("*.log")) if d.is_dir() else []
    if row["job_id"] and not str(row["job_id"]).startswith("local-"):
        sdir = Path(row["run_dir"]).parent / ".slurm"
        jid = str(row["job_id"])
        files.append(sdir / (f"job-{jid}.out" if "_" in jid else f"job-{jid}.out"))
    return files


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def refresh(store: Store, rows: List[Any]) -> List[Any]:
    """Update the store from Slurm for every run still active; returns the fresh rows."""
    active = [r for r in rows if r["state"] not in TERMINAL and r["job_id"]]
    if not active:
        return rows
    slurm_ids = [r["job_id"] for r in active if not r["job_id"].startswith("local-")]
    acct: Dict[str, slurm.JobInfo] = {}
    queue: Dict[str, slurm.JobInfo] = {}
    acct_ok = True
    if slurm_ids:
        try:
            acct = slurm.sacct(slurm_ids)
        except slurm.SlurmUnavailable:
            acct_ok = False
        still = [j for j in slurm_ids if not acct_ok or j not in acct or slurm.base_state(acct[j].state) in ACTIVE]
        if still:
            try:
                queue = slurm.squeue(still)
            except slurm.SlurmUnavailable:
                queue = {}
    updates = []
    for r in active:
        upd = _new_state(r, acct, queue, acct_ok)
        if upd:
            upd.update(run=r["run"], attempt=r["attempt"])
            updates.append(upd)
    store.update_attempts(updates)
    names = [r["run"] for r in rows]
    return store.latest(runs=names) if len(names) < 900 else [r for r in store.latest() if r["run"] in set(names)]


def _new_state(r: Any, acct: Dict[str, slurm.JobInfo], queue: Dict[str, slurm.JobInfo], acct_ok: bool) -> Optional[Dict[str, Any]]:
    jid = r["job_id"]
    if jid.startswith("local-"):
        res = _result(r["run_dir"], r["attempt"])
        if res is not None:
            code = int(res.get("exit_code", 1))
            state = "COMPLETED" if code == 0 else "FAILED"
            return _finish(r, state, f"{code}:0", "localhost", None)
        pid = int(jid.split("-", 1)[1]) if jid.split("-", 1)[1].isdigit() else -1
        if pid > 0 and _pid_alive(pid):
            return {"state": "RUNNING", "nodelist": "localhost", "elapsed": time.time() - (r["submitted"] or time.time())}
        return _finish(r, "FAILED", "", "localhost", "ended without a result (killed?)")
    q = queue.get(jid)
    a = acct.get(jid)
    if q is not None and (a is None or slurm.base_state(a.state) in ACTIVE):
        state = slurm.base_state(q.state)
        reason = q.reason if state == "PENDING" else None
        return {"state": state, "reason": reason or "", "nodelist": q.nodelist or None, "elapsed": q.elapsed,
                "partition": q.partition or None, "restarts": (a.restarts if a else None)}
    if a is not None:
        state = slurm.base_state(a.state)
        if state in ACTIVE:
            return {"state": state, "reason": a.reason if state == "PENDING" else "", "nodelist": a.nodelist or None,
                    "elapsed": a.elapsed, "restarts": a.restarts}
        return _finish(r, a.state, a.exit_code, a.nodelist, None, elapsed=a.elapsed, restarts=a.restarts)
    if not acct_ok:
        # no accounting: trust only what the job itself wrote; never guess
        res = _result(r["run_dir"], r["attempt"])
        if res is not None and not res.get("interrupted"):
            code = int(res.get("exit_code", 1))
            return _finish(r, "COMPLETED" if code == 0 else "FAILED", f"{code}:0", None, None)
        return {"state": "UNKNOWN", "reason": "not in the queue and sacct is unavailable"}
    return None  # accounting has not caught up yet: keep the last known state


def _finish(r: Any, state: str, exit_code: str, nodelist: Optional[str], reason: Optional[str],
            elapsed: Optional[int] = None, restarts: Optional[int] = None) -> Dict[str, Any]:
    base = slurm.base_state(state)
    if reason is None and base != "COMPLETED":
        reason = classify(state, exit_code, nodelist or "", tail_lines(log_files(r)))
    return {"state": base, "reason": reason or "", "exit_code": exit_code or None, "nodelist": nodelist or None,
            "ended": time.time(), "elapsed": elapsed, "restarts": restarts}


# ---- presentation ------------------------------------------------------------------------------
def fmt_elapsed(seconds: Optional[float]) -> str:
    if seconds is None:
        return "0:00"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    core = f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
    return f"{d}-{h:02d}:{m:02d}:{s:02d}" if d else core


def as_dict(r: Any) -> Dict[str, Any]:
    return {"run": r["run"], "sweep": r["sweep"], "job_id": r["job_id"], "state": r["state"], "reason": r["reason"] or "",
            "nodes": r["nodes"], "nodelist": r["nodelist"] or "", "partition": r["a_partition"] or r["partition"] or "",
            "elapsed": r["elapsed"], "attempt": r["attempt"], "restarts": r["restarts"] or 0,
            "exit_code": r["exit_code"], "name": r["experiment"], "run_dir": r["run_dir"]}


COLUMNS = ["RUN", "JOBID", "PARTITION", "NAME", "ST", "TIME", "NODES", "ATT", "NODELIST(REASON)"]


def table_rows(items: List[Dict[str, Any]]) -> List[List[str]]:
    out = []
    for it in items:
        state = it["state"]
        if state == "PENDING":
            last = f"({it['reason'] or 'None'})"
        elif state in TERMINAL and state != "COMPLETED":
            last = f"{it['nodelist']} ({it['reason']})" if it["nodelist"] and it["reason"] else (it["reason"] or it["nodelist"])
        else:
            last = it["nodelist"]
        out.append([it["run"], it["job_id"] or "-", it["partition"] or "-", it["name"][:12], SHORT.get(state, state[:3]),
                    fmt_elapsed(it["elapsed"]), str(it["nodes"]), str(it["attempt"]), last or ""])
    return out


def render_plain(items: List[Dict[str, Any]]) -> str:
    rows = table_rows(items)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(COLUMNS)]
    lines = []
    for sweep, counts in sweep_counts(items).items():
        lines.append(f"# {sweep}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(COLUMNS)).rstrip())
    for r in rows:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return "\n".join(lines)


def sweep_counts(items: List[Dict[str, Any]]) -> Dict[str, Dict[str, int]]:
    counts: Dict[str, Dict[str, int]] = {}
    for it in items:
        c = counts.setdefault(it["sweep"], {})
        c[it["state"]] = c.get(it["state"], 0) + 1
    return counts


def select(store: Store, names: Sequence[str], show_all: bool, states: Optional[str]) -> List[Any]:
    sweeps, runs = store.resolve(names) if names else ([], [])
    rows = store.latest(sweeps=sweeps, runs=runs)
    return rows


def filter_items(items: List[Dict[str, Any]], names: Sequence[str], show_all: bool, states: Optional[str]) -> List[Dict[str, Any]]:
    if states:
        wanted = {s.strip().upper() for s in states.split(",") if s.strip()}
        wanted |= {k for k, v in SHORT.items() if v in wanted}
        return [i for i in items if i["state"] in wanted]
    if show_all or names:
        return items
    return [i for i in items if i["state"] not in TERMINAL]


def wait_for(store: Store, sweeps: Sequence[str], poll: float = 2.0, timeout: Optional[float] = None) -> int:
    start = time.time()
    while True:
        rows = refresh(store, store.latest(sweeps=sweeps))
        if all(r["state"] in TERMINAL for r in rows):
            print(render_plain([as_dict(r) for r in rows]), file=sys.stderr)
            return 0 if all(r["state"] == "COMPLETED" for r in rows) else 1
        if timeout is not None and time.time() - start > timeout:
            return 1
        time.sleep(poll)
