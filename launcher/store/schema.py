"""The store's tables and indexes: one migration per schema version (`PRAGMA user_version`), and the version
check that refuses a store a newer danlu wrote."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Dict, List

from ..errors import UserError
from ..state.names import TERMINAL

MIGRATIONS: List[str] = [
    # 1: the first schema
    """
    CREATE TABLE sweeps (
        sweep TEXT PRIMARY KEY, experiment TEXT NOT NULL, cluster TEXT NOT NULL, created REAL NOT NULL,
        overrides TEXT NOT NULL, argv TEXT NOT NULL, sweep_dir TEXT NOT NULL
    );
    CREATE TABLE runs (
        run TEXT PRIMARY KEY, sweep TEXT NOT NULL REFERENCES sweeps(sweep), idx INTEGER NOT NULL,
        overrides TEXT NOT NULL, config TEXT NOT NULL, run_dir TEXT NOT NULL, workdir TEXT NOT NULL,
        git_commit TEXT, git_dirty INTEGER, partition TEXT, nodes INTEGER NOT NULL, cluster_kind TEXT NOT NULL,
        created REAL NOT NULL, UNIQUE (sweep, idx)
    );
    CREATE TABLE attempts (
        run TEXT NOT NULL REFERENCES runs(run), attempt INTEGER NOT NULL, token TEXT NOT NULL,
        job_id TEXT, array_job_id TEXT, array_task INTEGER, script TEXT, command TEXT,
        state TEXT NOT NULL, reason TEXT, exit_code TEXT, nodelist TEXT, partition TEXT,
        submitted REAL, started REAL, ended REAL, elapsed REAL, restarts INTEGER DEFAULT 0,
        overrides TEXT, updated REAL NOT NULL,
        PRIMARY KEY (run, attempt)
    );
    CREATE INDEX attempts_token ON attempts(token);
    CREATE INDEX attempts_state ON attempts(state);
    CREATE INDEX runs_sweep ON runs(sweep);
    """,
    # 2: look attempts up by Slurm job id (cancel, crash recovery)
    """
    CREATE INDEX attempts_job ON attempts(job_id);
    CREATE INDEX attempts_array_job ON attempts(array_job_id);
    """,
    # 3: whether the state is final (state/machine.py: PREEMPTED may be requeued), the raw accounting records;
    # where the sweep's configs and templates came from (a rerun composes from the same ones)
    """
    ALTER TABLE attempts ADD COLUMN final INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE attempts ADD COLUMN accounting TEXT;
    ALTER TABLE sweeps ADD COLUMN sources TEXT;
    UPDATE attempts SET final = 1 WHERE state IN (%s);
    """
    % ",".join(f"'{s}'" for s in sorted(TERMINAL)),
    # 4: what `danlu status` reads of every run, in indexes of their own: a run's row holds its whole config (~2 KB),
    # and reading 100,000 of those to show 8 short columns read the whole store
    """
    CREATE INDEX IF NOT EXISTS runs_brief ON runs(created, sweep, idx, run, run_dir, nodes, partition, cluster_kind);
    CREATE INDEX IF NOT EXISTS attempts_brief ON attempts(run, attempt, job_id, array_job_id, array_task, state, reason,
                                            exit_code, nodelist, partition, submitted, started, ended, elapsed,
                                            restarts, final);
    CREATE INDEX IF NOT EXISTS attempts_active ON attempts(final, job_id);
    """,
    # 5: each run's output dir as a real path (output_dir_of), found by equality in an index.
    # A run whose config names no output_arg has danlu's own, below its run dir.
    # The others are resolved in Python (danlu_output_dir, which migrate.py defines), as a new run's are.
    """
    ALTER TABLE runs ADD COLUMN output_dir TEXT;
    UPDATE runs SET output_dir = run_dir || '/output';
    UPDATE runs SET output_dir = danlu_output_dir(config, workdir, run_dir)
        WHERE instr(config, '"output_arg": null') = 0;
    CREATE INDEX runs_output_dir ON runs(output_dir);
    """,
    # 6: the code each attempt ran, frozen at submit (launcher/code/): the snapshot's key and the danlu job side's
    """
    ALTER TABLE attempts ADD COLUMN code TEXT;
    ALTER TABLE attempts ADD COLUMN job_code TEXT;
    """,
]

NEWEST = len(MIGRATIONS)  # the schema this danlu writes

UPDATED = (
    "state",
    "reason",
    "exit_code",
    "nodelist",
    "started",
    "ended",
    "elapsed",
    "restarts",
    "partition",
    "accounting",
)  # what a refresh may change of an attempt (besides `final`)

# the type a value written into an attempt's column comes back with (SQLite's column affinity): REAL makes 3 into
# 3.0, INTEGER makes 2.0 into 2, TEXT makes numbers text
AFFINITY: Dict[str, Any] = {"started": float, "ended": float, "elapsed": float, "restarts": int, "final": int}


def newer_error(path: Path, version: int) -> UserError:
    """The error for a store at schema `version`, newer than this danlu reads."""
    return UserError(
        f"the run store {str(path)!r} was written by a newer danlu: schema {version} is newer than "
        f"this danlu reads (up to schema {NEWEST})",
        "upgrade danlu, or point DANLU_STORE at another store (this one is left as it is)",
    )


def schema_of(db: sqlite3.Connection) -> int:
    """The schema version the store of `db` is at (0: a new, empty store)."""
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def refuse_newer(db: sqlite3.Connection, path: Path) -> None:
    """UserError (db closed) when a newer danlu wrote the store: this one would misread it. Called before the
    connection changes anything (its journal mode), so that the file stays as the newer danlu left it."""
    version = schema_of(db)
    if version > NEWEST:
        db.close()
        raise newer_error(path, version)
