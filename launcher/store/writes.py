"""What danlu writes to the store: a sweep with its runs, each attempt's way to Slurm (SUBMITTING, sent,
PENDING with its job id, or never sent), and what a refresh learnt of it. Every write is one short transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .connection import Connection
from .output_dir import output_dir_of
from .schema import UPDATED


@dataclass
class NewRun:
    run: str
    idx: int
    overrides: List[str]
    config: Dict[str, Any]
    run_dir: str
    workdir: str
    git_commit: Optional[str]
    git_dirty: Optional[bool]
    partition: Optional[str]
    nodes: int
    cluster_kind: str
    script: str
    command: str
    tag: str = ""  # <token>:<job number>: the --comment of the job this run goes out in
    array_task: Optional[int] = None
    output_dir: Optional[str] = None  # output_dir_of the run; None: worked out from config, workdir and run_dir
    code: Optional[str] = None  # the key of the attempt's frozen code (launcher/code/); None: the live workdir
    job_code: Optional[str] = None  # the key of the frozen danlu job side it starts

    def recorded_output_dir(self) -> str:
        """The output dir the store records for this run."""
        return self.output_dir or output_dir_of(self.config, self.workdir, self.run_dir)


def _run_row(sweep: str, r: NewRun, now: float) -> Tuple[Any, ...]:
    """A new run's row of the runs table, in the columns create_sweep inserts."""
    return (
        r.run,
        sweep,
        r.idx,
        json.dumps(r.overrides),
        json.dumps(r.config),
        r.run_dir,
        r.workdir,
        r.git_commit,
        None if r.git_dirty is None else int(r.git_dirty),
        r.partition,
        r.nodes,
        r.cluster_kind,
        now,
        r.recorded_output_dir(),
    )


class Writes(Connection):
    def create_sweep(
        self,
        name: str,
        experiment: str,
        cluster: str,
        overrides: Sequence[str],
        argv: Sequence[str],
        sweep_dir: str,
        runs: Sequence[NewRun],
        sources: Optional[Dict[str, Any]] = None,
    ) -> bool:
        """Insert a sweep with its runs and their first attempts (SUBMITTING) in one transaction. sources: the
        config dirs and template dir the runs were composed and rendered from (a rerun uses the same).

        Returns False when the name is taken (nothing written)."""
        now = time.time()
        try:
            with self.tx() as db:
                db.execute(
                    "INSERT INTO sweeps (sweep, experiment, cluster, created, overrides, argv, sweep_dir, sources) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (
                        name,
                        experiment,
                        cluster,
                        now,
                        json.dumps(list(overrides)),
                        json.dumps(list(argv)),
                        sweep_dir,
                        json.dumps(sources) if sources is not None else None,
                    ),
                )
                db.executemany(
                    "INSERT INTO runs (run, sweep, idx, overrides, config, run_dir, workdir, git_commit, git_dirty, "
                    "partition, nodes, cluster_kind, created, output_dir) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [_run_row(name, r, now) for r in runs],
                )
                db.executemany(
                    "INSERT INTO attempts (run, attempt, token, array_task, script, command, state, partition, "
                    "overrides, updated, code, job_code) VALUES (?,1,?,?,?,?,'SUBMITTING',?,'[]',?,?,?)",
                    [
                        (r.run, r.tag, r.array_task, r.script, r.command, r.partition, now, r.code, r.job_code)
                        for r in runs
                    ],
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def add_attempts(self, runs: Sequence[NewRun], overrides: Sequence[str], expect: Dict[str, int]) -> bool:
        """New attempts for reruns, only if each run's latest attempt is still `expect[run]`.

        Returns False (nothing written) when another process got there first."""
        now = time.time()
        with self.tx() as db:
            for r in runs:
                n = db.execute("SELECT MAX(attempt) FROM attempts WHERE run=?", (r.run,)).fetchone()[0]
                if n != expect[r.run]:
                    return False
            db.executemany(
                "INSERT INTO attempts (run, attempt, token, array_task, script, command, state, partition, "
                "overrides, updated, code, job_code) VALUES (?,?,?,?,?,?,'SUBMITTING',?,?,?,?,?)",
                [
                    (
                        r.run,
                        expect[r.run] + 1,
                        r.tag,
                        r.array_task,
                        r.script,
                        r.command,
                        r.partition,
                        json.dumps(list(overrides)),
                        now,
                        r.code,
                        r.job_code,
                    )
                    for r in runs
                ],
            )
            # the run row holds the run as its latest attempt runs it: a rerun's overrides reach its config (what
            # show, logs and notify read) and the next rerun composes from them
            db.executemany(
                "UPDATE runs SET overrides=?, config=?, workdir=?, partition=?, nodes=?, output_dir=? WHERE run=?",
                [
                    (
                        json.dumps(r.overrides),
                        json.dumps(r.config),
                        r.workdir,
                        r.partition,
                        r.nodes,
                        r.recorded_output_dir(),
                        r.run,
                    )
                    for r in runs
                ],
            )
        return True

    def record_job(self, tag: str, job_id: str, array: bool, submitted: Optional[float] = None) -> int:
        """After sbatch accepted the job tagged `tag`: its runs are PENDING with their job ids. Returns how many
        attempts were recorded: 0 when they are no longer SUBMITTING (recovery took their submit for dead)."""
        now = time.time()
        with self.tx() as db:
            if array:
                return db.execute(
                    "UPDATE attempts SET job_id=? || '_' || array_task, array_job_id=?, state='PENDING', "
                    "submitted=?, updated=? WHERE token=? AND state='SUBMITTING'",
                    (job_id, job_id, submitted or now, now, tag),
                ).rowcount
            return db.execute(
                "UPDATE attempts SET job_id=?, state='PENDING', submitted=?, updated=? "
                "WHERE token=? AND state='SUBMITTING'",
                (job_id, submitted or now, now, tag),
            ).rowcount

    def sending(self, tag: str) -> int:
        """Right before sbatch: the attempts of the job tagged `tag` may reach Slurm from now on (`submitted` set
        while SUBMITTING). Returns how many: 0 when recovery took their submit for dead and marked them."""
        now = time.time()
        with self.tx() as db:
            return db.execute(
                "UPDATE attempts SET submitted=?, updated=? WHERE token=? AND state='SUBMITTING'", (now, now, tag)
            ).rowcount

    def mark_unsubmitted(self, tag: str, reason: str, unsent_only: bool = False) -> List[str]:
        """The SUBMITTING attempts of the job tagged `tag` never reached Slurm: final UNSUBMITTED, with `reason`
        (`unsent_only`: only while their sbatch has not begun). Returns their runs."""
        where = "token=? AND state='SUBMITTING'" + (" AND submitted IS NULL" if unsent_only else "")
        with self.tx() as db:
            runs = [r[0] for r in db.execute(f"SELECT run FROM attempts WHERE {where}", (tag,))]
            db.execute(
                f"UPDATE attempts SET state='UNSUBMITTED', final=1, reason=?, updated=? WHERE {where}",
                (reason, time.time(), tag),
            )
        return runs

    def drop_unsubmitted(self, token: str, keep: Sequence[str] = ()) -> None:
        """Forget attempts that never reached Slurm (and runs left with no attempt); `keep`: tags (<token>:<n>) of
        jobs that may have reached it, left SUBMITTING for recovery to look up (submit/recovery.py)."""
        kept = ",".join("?" * len(keep))
        with self.tx() as db:
            db.execute(
                "DELETE FROM attempts WHERE (token=? OR token LIKE ?) AND state='SUBMITTING'"
                + (f" AND token NOT IN ({kept})" if keep else ""),
                (token, token + ":%", *keep),
            )
            db.execute("DELETE FROM runs WHERE run NOT IN (SELECT run FROM attempts)")
            db.execute("DELETE FROM sweeps WHERE sweep NOT IN (SELECT sweep FROM runs)")

    def update_attempts(self, rows: Iterable[Dict[str, Any]]) -> int:
        """Each row: run, attempt, `final` (state/machine.py) and the columns that changed (None: unchanged).
        Returns how many attempts were changed (a final one never is)."""
        cols = UPDATED
        now = time.time()
        batch = [tuple(r.get(c) for c in cols) + (int(bool(r["final"])), now, r["run"], r["attempt"]) for r in rows]
        if not batch:
            return 0
        with self.tx() as db:
            # a final state is never overwritten: two status processes may answer out of order, and the
            # older answer (RUNNING) must not undo the newer one (COMPLETED) or a `danlu cancel`
            cur = db.executemany(
                "UPDATE attempts SET "
                + ", ".join(f"{c}=COALESCE(?, {c})" for c in cols)
                + ", final=?, updated=? WHERE run=? AND attempt=? AND final=0",
                batch,
            )
            return cur.rowcount

    def record_accounting(self, run: str, records: Dict[int, str]) -> None:
        """sacct's raw records of attempts of `run` (attempt -> lines): a record of what Slurm said, kept even
        for final states."""
        if records:
            with self.tx() as db:
                db.executemany(
                    "UPDATE attempts SET accounting=? WHERE run=? AND attempt=?",
                    [(raw, run, n) for n, raw in records.items()],
                )
