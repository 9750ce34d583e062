"""`danlu status`: the store reconciled with Slurm, one sacct (+ at most one squeue) per refresh."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
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
    d = os.path.join(row["run_dir"], "logs", f"attempt-{row['attempt']}")
    files = sorted(Path(d).glob("*.log")) if os.path.isdir(d) else []
    if row["job_id"] and not str(row["job_id"]).startswith("local-"):
        files.append(Path(os.path.dirname(row["run_dir"]), ".slurm", f"job-{row['job_id']}.out"))
    return files


def launched_commands(run_dir: str, attempt: int) -> Dict[str, str]:
    """The command each node's agent really started (ranks, head address and port filled in)."""
    out: Dict[str, str] = {}
    d = attempt_dir(run_dir, attempt)
    for f in sorted(d.glob("agent-*.log")) if d.is_dir() else []:
        try:
            for line in f.read_text(errors="replace").splitlines():
                if "] command: " in line:
                    out[f.stem[len("agent-"):]] = line.split("] command: ", 1)[1]
        except OSError:
            continue
    return out


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


# Things status could not find out during the last refresh (printed on stderr by the CLI).
NOTES: List[str] = []


def refresh(store: Store, rows: List[Any]) -> List[Any]:
    """Update the store from Slurm for every run still active; returns the fresh rows.

    One `sacct` call for all of them (array tasks by their array job id) and at most one
    `squeue -t all` call. squeue is asked too because it is the controller's own, current view:
    sacct lags behind it, and for a few seconds after a requeue (preemption, node failure)
    sacct's last record says PREEMPTED/NODE_FAIL while the job is already pending again.
    Without sacct (no slurmdbd) squeue and the runs' result files are all there is; what
    neither knows becomes UNKNOWN, never a guess."""
    NOTES.clear()
    active = [r for r in rows if r["state"] not in TERMINAL and r["job_id"]]
    if not active:
        return rows
    slurm_ids = [r["job_id"] for r in active if not r["job_id"].startswith("local-")]
    acct: Dict[str, slurm.JobInfo] = {}
    queue: Dict[str, slurm.JobInfo] = {}
    acct_ok = queue_ok = True
    if slurm_ids:
        # both at once: a busy controller or slurmdbd answers each in a fraction of a second or more
        asked: Dict[str, Any] = {}

        def ask_accounting() -> None:
            try:
                asked["acct"] = slurm.sacct(slurm_ids)
            except slurm.SlurmUnavailable as e:
                asked["error"] = e

        thread = threading.Thread(target=ask_accounting, daemon=True)
        thread.start()
        queue_error = None
        try:
            queue = slurm.squeue(slurm_ids)
        except slurm.SlurmUnavailable as e:
            queue_error = e
        thread.join()
        acct = asked.get("acct", {})
        if "error" in asked:
            acct_ok = False
            NOTES.append(f"sacct is unavailable ({_short(asked['error'])}): states come from squeue and the runs' "
                         "result files; what neither knows is UNKNOWN")
        if queue_error is not None:
            queue_ok = False
            NOTES.append(f"squeue failed ({_short(queue_error)})")
    updates = []
    for r in active:
        upd = _new_state(r, acct, queue, acct_ok, queue_ok)
        if upd:
            upd.update(run=r["run"], attempt=r["attempt"])
            updates.append(upd)
    store.update_attempts(updates)
    # re-read the runs that may have changed (final states never do), as the caller read them
    changed = [r["run"] for r in rows if r["state"] not in TERMINAL]
    brief = "config" not in rows[0].keys()
    if len(changed) < 900:
        fresh = store.latest(runs=changed, brief=brief)
    else:
        wanted = set(changed)
        fresh = [r for r in store.latest(brief=brief) if r["run"] in wanted]
    by_run = {r["run"]: r for r in fresh}
    return [by_run.get(r["run"], r) for r in rows]


def _short(e: Exception) -> str:
    """The last line of a Slurm command's complaint, e.g. 'Problem talking to the database: Connection refused'."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(e).__name__
    text = re.sub(r"^(?:\w+: )?(?:\w+: error: )", "", text)
    return text if len(text) <= 160 else text[:157] + "..."


def _new_state(r: Any, acct: Dict[str, slurm.JobInfo], queue: Dict[str, slurm.JobInfo], acct_ok: bool,
               queue_ok: bool = True) -> Optional[Dict[str, Any]]:
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
    if "_" in jid:
        # a pending array cancelled as a whole (`scancel 123_[0-999]`) stays one record, "123", without
        # its tasks: that record is the state of every task
        q = q or queue.get(jid.split("_")[0])
        a = a or acct.get(jid.split("_")[0])
    q_state = slurm.base_state(q.state) if q else None
    a_state = slurm.base_state(a.state) if a else None
    if q is not None and q_state in ACTIVE:
        # the controller says it is queued or running (possibly again, after a requeue)
        return {"state": q_state, "reason": (q.reason or "None") if q_state == "PENDING" else "",
                "nodelist": q.nodelist or None, "elapsed": q.elapsed, "partition": q.partition or None,
                "restarts": a.restarts if a else None, "started": a.started if a else None}
    if a is not None and a_state not in ACTIVE:
        return _finish(r, a.state, a.exit_code, a.nodelist, None, elapsed=a.elapsed, restarts=a.restarts,
                       started=a.started, ended=a.ended)
    if q is not None:
        # ended a moment ago: the controller knows how (sacct not yet, or not at all)
        res = _result(r["run_dir"], r["attempt"])
        code = f"{int(res.get('exit_code', 1))}:0" if res is not None else ""
        return _finish(r, q.state, code, q.nodelist, None, elapsed=q.elapsed, restarts=a.restarts if a else None)
    if a is not None:
        # sacct says queued/running but the controller no longer lists it: accounting lags; keep sacct's view
        return {"state": a_state, "reason": (a.reason or "None") if a_state == "PENDING" else "",
                "nodelist": a.nodelist or None, "elapsed": a.elapsed, "restarts": a.restarts, "started": a.started}
    if not acct_ok:
        # no accounting and gone from the controller: trust only what the job itself wrote; never guess
        res = _result(r["run_dir"], r["attempt"])
        if res is not None and not res.get("interrupted") and queue_ok:
            code = int(res.get("exit_code", 1))
            ended = res.get("ended") if isinstance(res.get("ended"), (int, float)) else None
            return _finish(r, "COMPLETED" if code == 0 else "FAILED", f"{code}:0", None, None, ended=ended)
        why = "sacct is unavailable and squeue failed" if not queue_ok else "sacct is unavailable and squeue no longer lists the job"
        return {"state": "UNKNOWN", "reason": why}
    return None  # accounting has not caught up yet (just submitted): keep the last known state


def _finish(r: Any, state: str, exit_code: str, nodelist: Optional[str], reason: Optional[str],
            elapsed: Optional[int] = None, restarts: Optional[int] = None, started: Optional[float] = None,
            ended: Optional[float] = None) -> Dict[str, Any]:
    base = slurm.base_state(state)
    if reason is None and base != "COMPLETED":
        reason = classify(state, exit_code, nodelist or "", lambda: tail_lines(log_files(r)))
    return {"state": base, "reason": reason or "", "exit_code": exit_code or None, "nodelist": nodelist or None,
            "started": started, "ended": ended or time.time(), "elapsed": elapsed, "restarts": restarts}


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


def as_dicts(rows: List[Any]) -> List[Dict[str, Any]]:
    """as_dict of every row; columns looked up by position once (sqlite3.Row's by-name lookup is slow)."""
    if not rows:
        return []
    k = {name: i for i, name in enumerate(rows[0].keys())}
    run, sweep, job, state, reason, nodes, nodelist, a_part, part, elapsed, attempt, restarts, code, exp, rdir = (
        k["run"], k["sweep"], k["job_id"], k["state"], k["reason"], k["nodes"], k["nodelist"], k["a_partition"],
        k["partition"], k["elapsed"], k["attempt"], k["restarts"], k["exit_code"], k["experiment"], k["run_dir"])
    return [{"run": r[run], "sweep": r[sweep], "job_id": r[job], "state": r[state], "reason": r[reason] or "",
             "nodes": r[nodes], "nodelist": r[nodelist] or "", "partition": r[a_part] or r[part] or "",
             "elapsed": r[elapsed], "attempt": r[attempt], "restarts": r[restarts] or 0, "exit_code": r[code],
             "name": r[exp], "run_dir": r[rdir]} for r in rows]


COLUMNS = ["RUN", "JOBID", "PARTITION", "NAME", "ST", "TIME", "NODES", "ATT", "NODELIST(REASON)"]


def table_rows(items: List[Dict[str, Any]]) -> List[List[str]]:
    out = []
    for it in items:
        state = it["state"]
        if state == "PENDING":
            last = f"({it['reason'] or 'None'})"
        elif state in TERMINAL and state != "COMPLETED":
            last = f"{it['nodelist']} ({it['reason']})" if it["nodelist"] and it["reason"] else (it["reason"] or it["nodelist"])
        elif state == "UNKNOWN":
            last = f"({it['reason']})" if it["reason"] else ""
        else:
            last = it["nodelist"]
        elapsed = it["elapsed"]
        out.append([it["run"], it["job_id"] or "-", it["partition"] or "-", it["name"][:12], SHORT.get(state, state[:3]),
                    ("-" if state in TERMINAL else "0:00") if elapsed is None else fmt_elapsed(elapsed),
                    str(it["nodes"]), str(it["attempt"]), last or ""])
    return out


def render_plain(items: List[Dict[str, Any]]) -> str:
    rows = table_rows(items)
    widths = [max(len(c), max(map(len, col), default=0)) for c, col in zip(COLUMNS, zip(*rows) if rows else [()] * 9)]
    lines = []
    for sweep, counts in sweep_counts(items).items():
        lines.append(f"# {sweep}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    line = "  ".join(f"{{:<{w}}}" for w in widths).format  # one format call per row (10,000 rows: ~50 ms)
    lines.append(line(*COLUMNS).rstrip())
    lines.extend(line(*r).rstrip() for r in rows)
    return "\n".join(lines)


def sweep_counts(items: List[Dict[str, Any]]) -> Dict[str, Dict[str, int]]:
    counts: Dict[str, Dict[str, int]] = {}
    for it in items:
        c = counts.setdefault(it["sweep"], {})
        c[it["state"]] = c.get(it["state"], 0) + 1
    return counts


def select(store: Store, names: Sequence[str], show_all: bool, states: Optional[str]) -> List[Any]:
    sweeps, runs = store.resolve(names) if names else ([], [])
    return store.latest(sweeps=sweeps, runs=runs, brief=True)


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
