"""The column views `Store.latest` reads of each run (its latest attempt joined with its run and sweep), and the
rows it returns, which carry their view: whoever gets them knows their columns without guessing from their names.

"brief": what a refresh reconciles (state/machine.py step), not the resolved config, overrides, script or command,
whose text is most of a run's bytes (10,000 runs: 3x faster to read without them). "table": what `danlu status`
shows (views/table.py items); a refresh reads the brief columns of the few runs still active itself. "full": every
column. Each value read costs: 100,000 runs x 8 columns ~ 0.15 s. a_partition in brief and table: the partition
the attempt ran in, else the run's (what the table shows).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from operator import eq, itemgetter
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .schema import AFFINITY, UPDATED


@dataclass(frozen=True)
class View:
    name: str
    columns: str  # the SELECT list
    covered: bool  # status's: read from the covering indexes alone (runs_brief, attempts_brief), every attempt of a run
    steps: bool  # holds what the state machine needs to step an attempt (state/machine.py)


BRIEF = View(
    "brief",
    "r.run, r.sweep, r.idx, r.run_dir, r.nodes, r.partition, r.cluster_kind, r.created, a.attempt, "
    "a.job_id, a.array_job_id, a.array_task, a.state, a.reason, a.exit_code, a.nodelist, "
    "coalesce(a.partition, r.partition) AS a_partition, a.submitted, a.started, a.ended, a.elapsed, "
    "a.restarts, a.final, s.experiment",
    covered=True,
    steps=True,
)
TABLE = View(
    "table",
    "r.run, r.sweep, r.run_dir, r.nodes, a.attempt, a.job_id, a.state, a.reason, a.exit_code, "
    "a.nodelist, coalesce(a.partition, r.partition) AS a_partition, a.elapsed, a.restarts, a.final, "
    "s.experiment",
    covered=True,
    steps=False,
)
FULL = View(
    "full",
    "r.*, a.attempt, a.token, a.job_id, a.array_job_id, a.array_task, a.script, a.command, a.state, "
    "a.reason, a.exit_code, a.nodelist, a.partition AS a_partition, a.submitted, a.started, a.ended, "
    "a.elapsed, a.restarts, a.final, a.overrides AS a_overrides, a.code, a.job_code, s.experiment",
    covered=False,
    steps=True,
)
VIEWS = {v.name: v for v in (BRIEF, TABLE, FULL)}


class ViewRows(List[sqlite3.Row]):
    """The rows `Store.latest` read, with the view they were read in."""

    def __init__(self, view: View, rows: Iterable[sqlite3.Row] = ()) -> None:
        super().__init__(rows)
        self.view = view


def view_of(rows: Sequence[Any]) -> View:
    """The view `rows` were read in; TypeError for rows that are not `Store.latest`'s."""
    if not isinstance(rows, ViewRows):
        raise TypeError(f"rows of no store view ({type(rows).__name__}): read them with Store.latest")
    return rows.view


def _named(sweeps: Sequence[str], runs: Sequence[str]) -> Tuple[str, List[str]]:
    """The WHERE clause of the runs named, as sweeps or runs ("" for every run), and its parameters."""
    parts, params = [], []
    if sweeps:
        parts.append(f"r.sweep IN ({','.join('?' * len(sweeps))})")
        params += list(sweeps)
    if runs:
        parts.append(f"r.run IN ({','.join('?' * len(runs))})")
        params += list(runs)
    return ("WHERE (" + " OR ".join(parts) + ")" if parts else ""), params


def latest_sql(view: View, sweeps: Sequence[str], runs: Sequence[str]) -> Tuple[str, List[str]]:
    """The query of `Store.latest` and its parameters. A covered view reads every attempt (no correlated MAX per
    run), the latest kept by `in_order`; of all runs, in runs_brief's order, which is the table's (created, sweep,
    idx): no sort. The table's view has no sort key of its own: named runs get one, to be sorted on."""
    where, params = _named(sweeps, runs)
    cols = view.columns + (", r.created, r.idx " if where and view is TABLE else " ")
    if view.covered:
        sql = (
            "SELECT "
            + cols
            + "FROM runs r "
            + ("" if where else "INDEXED BY runs_brief ")
            + "JOIN attempts a ON a.run = r.run JOIN sweeps s ON s.sweep = r.sweep "
            + (where or "ORDER BY r.created, r.sweep, r.idx")
        )
    else:
        sql = (
            "SELECT " + cols + "FROM runs r JOIN sweeps s ON s.sweep = r.sweep JOIN attempts a ON a.run = r.run "
            "AND a.attempt = (SELECT MAX(attempt) FROM attempts WHERE run = r.run) " + where
        )
    return sql, params


def in_order(view: View, named: bool, names: List[str], rows: List[sqlite3.Row]) -> List[sqlite3.Row]:
    """The rows of `latest_sql` (columns `names`) in the table's order, each run's latest attempt only. Sorted here,
    not by ORDER BY: SQLite's sort of 10,000 wide rows takes longer than the query."""
    a = names.index("attempt")
    if named or not view.covered:
        c, s, i = names.index("created"), names.index("sweep"), names.index("idx")
        rows.sort(key=lambda r: (r[c], r[s], r[i], r[a]))
    if view.covered:  # each run's latest attempt (a run's rows are next to each other)
        r_ = names.index("run")
        run_names = list(map(itemgetter(r_), rows))
        if any(map(eq, run_names, run_names[1:])):
            latest: Dict[str, Any] = {}
            for row in rows:
                seen = latest.get(row[r_])
                if seen is None or row[a] > seen[a]:
                    latest[row[r_]] = row
            rows = [row for k, row in enumerate(rows) if latest[row[r_]] is row]
    return rows


def with_updates(
    view: View, rows: Sequence[sqlite3.Row], updates: Dict[str, Dict[str, Any]], columns: sqlite3.Cursor
) -> Optional[ViewRows]:
    """`rows` as the store has them after update_attempts applied every one of `updates` (run -> update), made as the
    store made them (None keeps a column; a_partition: the attempt's partition, else the run's); `columns`: a cursor
    of the rows' columns, which sqlite3.Row takes its names from. None when a run's row is not of the attempt its
    update is for."""
    names = list(rows[0].keys())
    pos = {n: i for i, n in enumerate(names)}
    column = {"partition": "a_partition"}
    targets = [(pos[column.get(c, c)], c) for c in UPDATED + ("final",) if column.get(c, c) in pos]
    run, attempt = pos["run"], pos["attempt"]
    out = ViewRows(view)
    for r in rows:
        upd = updates.get(r[run])
        if upd is None:
            out.append(r)
            continue
        if upd["attempt"] != r[attempt]:
            return None
        values = list(r)
        for i, c in targets:
            value = int(bool(upd["final"])) if c == "final" else upd.get(c)
            if value is not None:
                values[i] = AFFINITY.get(c, str)(value)
        out.append(sqlite3.Row(columns, tuple(values)))
    return out
