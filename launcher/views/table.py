"""The squeue-style table of runs (`danlu status`) and its JSON items."""

from __future__ import annotations

from collections import Counter
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from ..state.names import SHORT, TERMINAL, parse_states

if TYPE_CHECKING:
    from ..store import Store

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
        k["run"],
        k["sweep"],
        k["job_id"],
        k["state"],
        k["reason"],
        k["nodes"],
        k["nodelist"],
        k["a_partition"],
        k.get("partition", k["a_partition"]),
        k["elapsed"],
        k["attempt"],
        k["restarts"],
        k["exit_code"],
        k["experiment"],
        k["run_dir"],
        k["final"],
    )
    return [
        {
            "run": r[run],
            "sweep": r[sweep],
            "job_id": r[job],
            "state": r[state],
            "reason": r[reason] or "",
            "nodes": r[nodes],
            "nodelist": r[nodelist] or "",
            "partition": r[a_part] or r[part] or "",
            "elapsed": r[elapsed],
            "attempt": r[attempt],
            "restarts": r[restarts] or 0,
            "exit_code": r[code],
            "name": job_name(r[run], r[sweep], r[job]),
            "experiment": r[exp],
            "run_dir": r[rdir],
            "final": bool(r[fin]),
        }
        for r in rows
    ]


def job_name(run: str, sweep: str, job_id: Optional[str]) -> str:
    """The name squeue shows for the run's job (slurm.job_name): its sweep for an array task (job id 12_3) or a job
    not submitted yet, else the run id (a job of one run; a local run is named the same way)."""
    return sweep if not job_id or "_" in job_id else run


def _last(state: str, reason: str, nodelist: str) -> str:
    """squeue's NODELIST(REASON) cell."""
    if state == "COMPLETED":
        return nodelist
    if state == "PENDING":
        return f"({reason or 'None'})"
    if state in TERMINAL:
        return f"{nodelist} ({reason})" if nodelist and reason else (reason or nodelist)
    if state == "UNKNOWN":
        return f"({reason})" if reason else ""
    return nodelist


def _time(state: str, elapsed: Optional[float]) -> str:
    """The TIME cell."""
    if elapsed is None:
        return "-" if state in TERMINAL else "0:00"
    return fmt_elapsed(elapsed)


class Fields:
    """Where the values of a table line are in the rows of a source: JSON items (by name) or the store's rows of
    views "table" and "brief" (store.VIEWS, by position: no item is built for a row only printed)."""

    def __init__(self, names: Sequence[str]) -> None:
        k: Dict[str, Any] = {name: i for i, name in enumerate(names)}  # a row's position, or an item's key
        if "job_id" in k and "experiment" in k:  # a store row
            run, job, part, sweep = k["run"], k["job_id"], k["a_partition"], k["sweep"]
        else:
            run, job, part, sweep = "run", "job_id", "partition", "sweep"
            k = {n: n for n in ("state", "elapsed", "nodes", "attempt", "reason", "nodelist", "final")}
        self.run, self.job, self.final, self.state = (
            itemgetter(run),
            itemgetter(job),
            itemgetter(k["final"]),
            itemgetter(k["state"]),
        )
        # what a line's cells after RUN and JOBID are made of; 100,000 runs share few distinct values of it
        # (states, reasons, partitions, times of finished runs), so those cells are made once per distinct value;
        # NAME is the sweep here, the run id where the job is one run's (_cells: job_name)
        self.rest = itemgetter(
            part, sweep, k["state"], k["elapsed"], k["nodes"], k["attempt"], k["reason"], k["nodelist"]
        )
        self.sweep_state = itemgetter(sweep, k["state"])


ITEM_FIELDS = Fields([])
Progress = Dict[str, Tuple[Optional[int], Optional[float]]]  # run -> (step, the shown metric's value)


def _rest(
    partition: str,
    name: str,
    state: str,
    elapsed: Optional[float],
    nodes: int,
    attempt: int,
    reason: str,
    nodelist: str,
    progress: Optional[Tuple[Optional[int], Optional[float]]] = None,
) -> Tuple[str, ...]:
    """The cells after RUN and JOBID; progress: (step, the metric's value) when the table shows them."""
    cells: Tuple[str, ...] = (
        partition or "-",
        name,
        SHORT.get(state) or state[:3],
        _time(state, elapsed),
        str(nodes),
        str(attempt),
    )
    if progress is not None:
        cells += ("-" if progress[0] is None else str(progress[0]), _value(progress[1]))
    return cells + (_last(state, reason or "", nodelist or "") or "",)


def _cells(
    src: Sequence[Any], fields: Fields, progress: Optional[Progress]
) -> Tuple[List[str], List[str], List[Tuple[str, ...]]]:
    """RUN, JOBID and the other cells (a tuple per row, shared by the rows that have the same)."""
    runs = list(map(fields.run, src))
    jobs = [j or "-" for j in map(fields.job, src)]
    keys: List[Any] = list(map(fields.rest, src))
    if progress is not None:
        none = (None, None)
        keys = list(zip(keys, [progress.get(r, none) for r in runs], strict=True))
        memo = {k: _rest(*(*k[0], k[1])) for k in set(keys)}  # the cells, then the progress
    else:
        memo = {k: _rest(*k) for k in set(keys)}
    cells = list(map(memo.__getitem__, keys))
    if not all("_" in j or j == "-" for j in jobs):  # jobs of one run each: squeue names them by the run (job_name)
        cells = [c if "_" in j or j == "-" else (c[0], r, *c[2:]) for c, j, r in zip(cells, jobs, runs, strict=True)]
    return runs, jobs, cells


def item_progress(shown: List[Dict[str, Any]], metric: Optional[str]) -> Optional[Progress]:
    """The progress cells of items that add_progress gave a step and metrics (None: the table shows none)."""
    if not metric:
        return None
    return {
        it["run"]: (it.get("step"), (it.get("metrics") or {}).get(metric))
        for it in shown
        if it.get("step") is not None or it.get("metrics")
    }


def table_rows(shown: List[Dict[str, Any]], metric: Optional[str] = None) -> List[List[str]]:
    runs, jobs, rest = _cells(shown, ITEM_FIELDS, item_progress(shown, metric))
    return [[r, j, *x] for r, j, x in zip(runs, jobs, rest, strict=True)]


def render_plain(shown: List[Dict[str, Any]], metric: Optional[str] = None) -> str:
    """The table of JSON items (add_progress gave the running ones their step and metrics)."""
    return render(shown, ITEM_FIELDS, metric, item_progress(shown, metric))


def render(
    src: Sequence[Any], fields: Fields, metric: Optional[str] = None, progress: Optional[Progress] = None
) -> str:
    """The table: a line of counts per sweep, the heads, a line per row of `src` (items or store rows: `fields`)."""
    runs, jobs, rest = _cells(src, fields, progress if metric else None)
    heads = columns(metric)
    distinct = set(rest)
    widths = [max(len(heads[0]), max(map(len, runs), default=0)), max(len(heads[1]), max(map(len, jobs), default=0))]
    widths += [max(len(h), max((len(x[k]) for x in distinct), default=0)) for k, h in enumerate(heads[2:])]
    lines = []
    for sweep, counts in sweep_counts(src, fields).items():
        lines.append(f"# {sweep}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    rest_line = "  ".join(f"{{:<{w}}}" for w in widths[2:]).format
    text = {x: rest_line(*x).rstrip() for x in distinct}  # the end of a line, once per distinct one
    line = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{}}".format
    lines.append(line(*heads[:2], rest_line(*heads[2:]).rstrip()))
    lines.extend(map(line, runs, jobs, map(text.__getitem__, rest)))
    return "\n".join(lines)


def sweep_counts(src: Sequence[Any], fields: Fields = ITEM_FIELDS) -> Dict[str, Dict[str, int]]:
    """Runs per state of each sweep, sweeps and states in the order they first appear."""
    counts: Dict[str, Dict[str, int]] = {}
    for (sweep, state), n in Counter(map(fields.sweep_state, src)).items():
        counts.setdefault(sweep, {})[state] = n
    return counts


def filter_items(
    every: List[Any], names: Sequence[str], show_all: bool, states: Optional[str], fields: Fields = ITEM_FIELDS
) -> List[Any]:
    """What `status` lists: the given states; else everything named (or --all); else the runs not final yet
    (a PREEMPTED run that Slurm may start again included). Items, or store rows with their `fields`."""
    if states:
        wanted = parse_states(states)
        return [i for i in every if fields.state(i) in wanted]
    if show_all or names:
        return every
    return [i for i in every if not fields.final(i)]


def select(store: Store, names: Sequence[str], view: str = "table") -> List[Any]:
    """The latest attempt of every run named (sweeps or runs), or of every run; the columns status shows (or those
    of another of store.VIEWS that has them)."""
    sweeps, runs = store.resolve(names) if names else ([], [])
    return store.latest(sweeps=sweeps, runs=runs, view=view)
