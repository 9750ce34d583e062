"""The squeue-style table of runs (`danlu status`) and its JSON items."""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Dict, List, Optional, Sequence

from ..state.names import SHORT, TERMINAL, parse_states

COLUMNS = ["RUN", "JOBID", "PARTITION", "NAME", "ST", "TIME", "NODES", "ATT", "NODELIST(REASON)"]


def columns(metric: Optional[str] = None) -> List[str]:
    """The table's columns: with running runs' progress (metrics/live.py), their step and the metric's latest value
    before the last column, which stays squeue's NODELIST(REASON)."""
    return COLUMNS if not metric else COLUMNS[:-1] + ["STEP", metric.upper()] + COLUMNS[-1:]


def _value(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4g}"


def fmt_elapsed(seconds: Optional[float]) -> str:
    if seconds is None:
        return "0:00"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    core = f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
    return f"{d}-{h:02d}:{m:02d}:{s:02d}" if d else core


def items(rows: Sequence[Any]) -> List[Dict[str, Any]]:
    """The JSON item of every store row; columns looked up by position once (sqlite3.Row's by-name lookup is slow)."""
    if not rows:
        return []
    k = {name: i for i, name in enumerate(rows[0].keys())}
    run, sweep, job, state, reason, nodes, nodelist, a_part, part, elapsed, attempt, restarts, code, exp, rdir, fin = (
        k["run"], k["sweep"], k["job_id"], k["state"], k["reason"], k["nodes"], k["nodelist"], k["a_partition"],
        k["partition"], k["elapsed"], k["attempt"], k["restarts"], k["exit_code"], k["experiment"], k["run_dir"],
        k["final"])
    return [{"run": r[run], "sweep": r[sweep], "job_id": r[job], "state": r[state], "reason": r[reason] or "",
             "nodes": r[nodes], "nodelist": r[nodelist] or "", "partition": r[a_part] or r[part] or "",
             "elapsed": r[elapsed], "attempt": r[attempt], "restarts": r[restarts] or 0, "exit_code": r[code],
             "name": r[exp], "run_dir": r[rdir], "final": bool(r[fin])} for r in rows]


def table_rows(shown: List[Dict[str, Any]], metric: Optional[str] = None) -> List[List[str]]:
    out = []
    short, terminal = SHORT, TERMINAL
    times: Dict[Any, str] = {}  # elapsed -> its text: 100,000 finished runs share few distinct values
    for it in shown:
        state = it["state"]
        if state == "COMPLETED":  # most rows of a big store
            last = it["nodelist"]
        elif state == "PENDING":
            last = f"({it['reason'] or 'None'})"
        elif state in terminal:
            last = f"{it['nodelist']} ({it['reason']})" if it["nodelist"] and it["reason"] else (it["reason"] or it["nodelist"])
        elif state == "UNKNOWN":
            last = f"({it['reason']})" if it["reason"] else ""
        else:
            last = it["nodelist"]
        elapsed = it["elapsed"]
        if elapsed is None:
            shown_time = "-" if state in terminal else "0:00"
        else:
            shown_time = times.get(elapsed)
            if shown_time is None:
                shown_time = times[elapsed] = fmt_elapsed(elapsed)
        row = [it["run"], it["job_id"] or "-", it["partition"] or "-", it["name"][:12], short.get(state) or state[:3],
               shown_time,
               str(it["nodes"]), str(it["attempt"]), last or ""]
        if metric:
            step, values = it.get("step"), it.get("metrics") or {}
            row[-1:-1] = ["-" if step is None else str(step), _value(values.get(metric))]
        out.append(row)
    return out


def render_plain(shown: List[Dict[str, Any]], metric: Optional[str] = None) -> str:
    rows = table_rows(shown, metric)
    heads = columns(metric)
    widths = [max(len(c), max(map(len, map(itemgetter(k), rows)), default=0)) for k, c in enumerate(heads)]
    lines = []
    for sweep, counts in sweep_counts(shown).items():
        lines.append(f"# {sweep}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    line = "  ".join(f"{{:<{w}}}" for w in widths).format  # one format call per row (10,000 rows: ~50 ms)
    lines.append(line(*heads).rstrip())
    lines.extend(line(*r).rstrip() for r in rows)
    return "\n".join(lines)


def sweep_counts(shown: List[Dict[str, Any]]) -> Dict[str, Dict[str, int]]:
    counts: Dict[str, Dict[str, int]] = {}
    for it in shown:
        c = counts.setdefault(it["sweep"], {})
        c[it["state"]] = c.get(it["state"], 0) + 1
    return counts


def filter_items(every: List[Dict[str, Any]], names: Sequence[str], show_all: bool, states: Optional[str]) -> List[Dict[str, Any]]:
    """What `status` lists: the given states; else everything named (or --all); else the runs not final yet
    (a PREEMPTED run that Slurm may start again included)."""
    if states:
        wanted = parse_states(states)
        return [i for i in every if i["state"] in wanted]
    if show_all or names:
        return every
    return [i for i in every if not i["final"]]


def select(store: Any, names: Sequence[str]) -> List[Any]:
    """The latest attempt of every run named (sweeps or runs), or of every run; the columns status needs."""
    sweeps, runs = store.resolve(names) if names else ([], [])
    return store.latest(sweeps=sweeps, runs=runs, brief=True)
