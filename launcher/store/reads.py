"""What danlu reads of the store: the latest attempt of runs in one of the column views, and single lookups."""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Dict, List, Optional, Sequence, Union

from ..errors import UserError
from .connection import Connection
from .output_dir import real_output_dir
from .views import VIEWS, View, ViewRows, in_order, latest_sql, view_of, with_updates

# From this many runs on, naming them in a read (an IN list) costs more than reading every run's row of the covering
# indexes and keeping theirs; fewer also stay within the 999 host parameters of older SQLite. Read so: named runs
# (latest_of_runs); as many changed runs after a refresh, made from its updates instead; and status reads the state
# machine's columns at once when it is to reconcile as many.
MANY_RUNS = 900


class Reads(Connection):
    def latest(self, sweeps: Sequence[str] = (), runs: Sequence[str] = (), view: Union[str, View] = "full") -> ViewRows:
        """The latest attempt of each run, joined with its run row, optionally filtered; the columns of `view`
        (views.py: "full", "brief" or "table")."""
        shape = VIEWS[view] if isinstance(view, str) else view
        sql, params = latest_sql(shape, sweeps, runs)
        with self.use() as db:
            cur = db.execute(sql, params)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return ViewRows(shape, in_order(shape, bool(sweeps or runs), names, rows))

    def latest_of_runs(self, runs: Sequence[str], view: Union[str, View]) -> ViewRows:
        """The latest attempt of these runs: by name when they are few, else every run's, filtered here (a long IN
        list is slower than reading the index whole)."""
        if len(runs) < MANY_RUNS:
            return self.latest(runs=runs, view=view)
        wanted = set(runs)
        every = self.latest(view=view)
        return ViewRows(every.view, [r for r in every if r["run"] in wanted])

    def updated_rows(
        self, rows: Sequence[sqlite3.Row], updates: Dict[str, Dict[str, Any]]
    ) -> Optional[List[sqlite3.Row]]:
        """`rows` (of the "brief" or "table" view) as the store has them after update_attempts applied every one of
        `updates` (run -> update), made here as the store made them instead of reading them all again (views.py
        with_updates). None when a run's row is not of the attempt its update is for."""
        if not rows:
            return list(rows)
        names = list(rows[0].keys())
        with self.use() as db:  # a cursor of the rows' columns: sqlite3.Row takes its names from it
            cur = db.execute("SELECT " + ", ".join(f'NULL AS "{n}"' for n in names) + " LIMIT 0")
        return with_updates(view_of(rows), rows, updates, cur)

    def active_job_ids(self, kinds: Sequence[str]) -> List[str]:
        """The job ids of every attempt not final yet whose run went to a cluster of these kinds (the ones Slurm
        is asked about: backends.IN_SLURM), from the indexes."""
        marks = ", ".join("?" for _ in kinds)
        with self.use() as db:
            return [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT a.job_id FROM attempts a JOIN runs r USING (run) WHERE a.final = 0 AND "
                    f"a.job_id IS NOT NULL AND r.cluster_kind IN ({marks})",
                    tuple(kinds),
                )
            ]

    def query(self, sql: str, params: Sequence[Any] = ()) -> List[sqlite3.Row]:
        with self.use() as db:
            return list(db.execute(sql, params))

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Optional[sqlite3.Row]:
        with self.use() as db:
            row: Optional[sqlite3.Row] = db.execute(sql, params).fetchone()
            return row

    def attempts(self, run: str) -> List[sqlite3.Row]:
        return self.query("SELECT * FROM attempts WHERE run=? ORDER BY attempt", (run,))

    def run_dirs(self) -> List[str]:
        """Every distinct run folder of the store (the code stores of their runs_dirs: launcher/code/gc.py)."""
        return [str(r[0]) for r in self.query("SELECT DISTINCT run_dir FROM runs")]

    def code_keys(self) -> set[str]:
        """The snapshot keys any attempt names, its own code's and its danlu job side's (every attempt: an old
        attempt's logs name its code too)."""
        rows = self.query(
            "SELECT code FROM attempts WHERE code IS NOT NULL UNION "
            "SELECT job_code FROM attempts WHERE job_code IS NOT NULL"
        )
        return {str(r[0]) for r in rows}

    def sweep(self, name: str) -> Optional[sqlite3.Row]:
        return self._one("SELECT * FROM sweeps WHERE sweep=?", (name,))

    def sweep_exists(self, name: str) -> bool:
        return self._one("SELECT 1 FROM sweeps WHERE sweep=?", (name,)) is not None

    def run(self, run: str) -> Optional[sqlite3.Row]:
        return self._one("SELECT * FROM runs WHERE run=?", (run,))

    def array_size(self, array_job_id: str) -> int:
        """How many attempts went out in the job array `array_job_id`."""
        row = self._one("SELECT COUNT(*) FROM attempts WHERE array_job_id=?", (array_job_id,))
        return int(row[0]) if row else 0

    def job_of(self, tag: str) -> Optional[str]:
        """The job id recorded for the job tagged `tag` (an array's own id), None while none is."""
        row = self._one("SELECT COALESCE(array_job_id, job_id) FROM attempts WHERE token=? LIMIT 1", (tag,))
        return row[0] if row else None

    def submitting(self) -> List[sqlite3.Row]:
        return self.query(
            "SELECT a.*, r.cluster_kind, r.sweep FROM attempts a JOIN runs r USING (run) WHERE a.state='SUBMITTING'"
        )

    def job_ids(self) -> set[str]:
        """Every Slurm job id (and array job id) the store knows."""
        rows = self.query(
            "SELECT job_id FROM attempts WHERE job_id IS NOT NULL UNION "
            "SELECT array_job_id FROM attempts WHERE array_job_id IS NOT NULL"
        )
        return {str(r[0]) for r in rows}

    def output_owner(self, path: str) -> Optional[str]:
        """The latest run whose output dir `path` is, compared as real paths (real_output_dir): the dir its config
        names, or the one danlu gave it (its run dir's output/) or a folder inside that one."""
        real = real_output_dir(path, ".")
        around = [real]  # the path and the folders it is in: one of these may be danlu's output dir of a run
        while os.path.dirname(around[-1]) != around[-1]:
            around.append(os.path.dirname(around[-1]))
        row = self._one(
            f"SELECT run FROM runs WHERE output_dir IN ({','.join('?' * len(around))}) "
            "AND (output_dir = ? OR output_dir = run_dir || '/output') ORDER BY created DESC LIMIT 1",
            (*around, real),
        )
        return str(row[0]) if row else None

    def active_configs(self) -> List[sqlite3.Row]:
        """run, workdir and config of every run whose latest attempt is not final (queued, running, requeued), as the
        store last saw it."""
        return self.query(
            "SELECT r.run, r.workdir, r.config FROM attempts a JOIN runs r ON r.run = a.run WHERE a.final = 0 "
            "AND a.attempt = (SELECT MAX(attempt) FROM attempts WHERE run = a.run) ORDER BY r.created, r.run"
        )

    def resolve(self, names: Sequence[str]) -> tuple[List[str], List[str]]:
        """Split names into sweeps and runs; UserError for a name that is neither."""
        sweeps, runs = [], []
        for name in names:
            if self.sweep(name):
                sweeps.append(name)
            elif self.run(name):
                runs.append(name)
            else:
                raise UserError(
                    f"no sweep or run named {name!r}",
                    "`danlu status --all` lists sweeps and runs (ids look like sweep/3)",
                )
        return sweeps, runs
