"""The run store: SQLite, one row per sweep, run and attempt.

Concurrent danlu processes are safe: every write is one short `BEGIN IMMEDIATE` transaction and a busy store
is waited for (not failed). The schema is versioned with `PRAGMA user_version` and migrated forward on open.

Where the store lives decides how it is shared (network_fs.store_mode):
  * on a local disk: WAL mode, one connection per process; readers never block writers;
  * on a network file system (an NFS home that several login nodes share): a rollback journal, no SQLite
    locking at all, and every read or transaction inside a lock directory (dir_lock.py) on a connection
    opened for it and closed before the lock is given back, so each host reads what the others wrote and
    no two hosts ever write at once. WAL is unsafe there (its shared memory does not span hosts), and so are
    POSIX locks wherever the file system does not carry them to the server.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
import urllib.parse
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from operator import eq, itemgetter
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

from .dir_lock import DirLock, LockTimeout
from .errors import UserError
from .network_fs import ENV as STORE_FS_ENV
from .network_fs import forced_mode, store_mode
from .paths import data_home
from .state.names import TERMINAL

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
    # The others are resolved in Python (danlu_output_dir, which _migrate defines), as a new run's are.
    """
    ALTER TABLE runs ADD COLUMN output_dir TEXT;
    UPDATE runs SET output_dir = run_dir || '/output';
    UPDATE runs SET output_dir = danlu_output_dir(config, workdir, run_dir)
        WHERE instr(config, '"output_arg": null') = 0;
    CREATE INDEX runs_output_dir ON runs(output_dir);
    """,
]


def default_path() -> Path:
    return Path(os.environ.get("DANLU_STORE") or data_home() / "store.sqlite").expanduser()


def real_output_dir(value: str, workdir: str) -> str:
    """The output dir a run's args name, as the file system has it: ~ expanded, a relative path taken from the run's
    workdir, every symlink resolved. A path that does not exist yet is resolved as far as it exists."""
    return os.path.realpath(os.path.join(os.path.expanduser(workdir), os.path.expanduser(value)))


def output_dir_of(config: Dict[str, Any], workdir: str, run_dir: str) -> str:
    """A run's output dir as the store records it: the real path of the one its config names, else danlu's own.
    Danlu's own needs no file system call: the run dir is below the resolved runs dir."""
    output_arg = config.get("output_arg")
    args = config.get("args")
    value = args.get(output_arg) if output_arg and isinstance(args, dict) else None
    if value is None or value is False:
        return run_dir + "/output"
    return real_output_dir(str(value), workdir)


def _stored_output_dir(config: str, workdir: str, run_dir: str) -> str:
    """output_dir_of a stored row (migration 5); a config it cannot read gets danlu's own."""
    try:
        loaded = json.loads(config)
        return output_dir_of(loaded if isinstance(loaded, dict) else {}, workdir or ".", run_dir)
    except (ValueError, TypeError, OSError):
        return run_dir + "/output"


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


def _use_wal(db: sqlite3.Connection, patience_s: float = 30.0) -> None:
    """Put the store in WAL mode (persistent, set once per file). While another process holds a lock on a
    new store, SQLite fails at once ("database is locked") or leaves the mode unchanged, without its busy
    wait: try again until it sticks."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            mode = f"unchanged ({e})"
        if mode.lower() == "wal":
            return
        if time.monotonic() > deadline:
            raise sqlite3.DatabaseError(f"journal mode stays {mode!r}, not WAL")
        time.sleep(0.05)


def recorded_mode(path: Path) -> Optional[str]:
    """The mode the store at `path` was made in, from its file header, which SQLite keeps for each file: "local"
    (WAL), "network" (a rollback journal), or None while nothing is written yet."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return None
    if len(header) < 20 or not header.startswith(b"SQLite format 3\0"):
        return None
    return "local" if header[18:20] == b"\x02\x02" else "network"


def _mode_for(path: Path) -> tuple[str, str]:
    """(mode, why) the store at `path` is opened in. Every host must open one store alike, and a file server that
    sees its own disk as local would not: a store made in network mode stays so wherever it is opened; a store
    made in local mode is refused where the file system is a network one. DANLU_STORE_FS converts a store."""
    mode, why = store_mode(path)
    recorded = recorded_mode(path)
    if recorded is None or recorded == mode or forced_mode() is not None:
        return mode, why
    if recorded == "network":
        return "network", f"the store was made in network mode ({why} here)"
    raise UserError(
        f"the run store {str(path)!r} was made in local mode (WAL, one host only) and is on a network file "
        f"system here ({why})",
        f"if no danlu on another host uses it now, convert it once with {STORE_FS_ENV}=network; every host then "
        "opens it in network mode",
    )


# the type a value written into an attempt's column comes back with (SQLite's column affinity): REAL makes 3 into
# 3.0, INTEGER makes 2.0 into 2, TEXT makes numbers text
_AFFINITY: Dict[str, Any] = {"started": float, "ended": float, "elapsed": float, "restarts": int, "final": int}


class Store:
    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.mode, self.mode_why = _mode_for(self.path)
        self.shared = self.mode == "network"
        self.lock = DirLock(self.path.with_name(self.path.name + ".lock")) if self.shared else None
        self._held: Optional[sqlite3.Connection] = None  # shared: the connection of the lock held now
        self.db: Optional[sqlite3.Connection] = None  # local: this process's one connection
        try:
            if not self.shared:
                self.db = self._connect()
                # closed at exit too (`danlu` ends with os._exit, launcher/cli entry): the last connection's close
                # checkpoints the WAL and removes it; left open, the next process rebuilds the WAL's index from the
                # whole file and copies all of it into the database again (100,000 runs: +0.1-0.4 s per command)
                weakref.finalize(self, self.db.close)
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise UserError(
                f"the run store {str(self.path)!r} is unreadable: {e}",
                "move the file aside (it may be corrupted) or point DANLU_STORE at another store",
            ) from None
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass

    def _connect(self) -> sqlite3.Connection:
        if self.shared:
            # no SQLite locking (the lock directory is the lock); exclusive locking mode also opens a store a
            # local-disk danlu left in WAL mode, which becomes a rollback-journal store here
            db = sqlite3.connect(
                "file:" + urllib.parse.quote(str(self.path)) + "?vfs=unix-none",
                uri=True,
                timeout=60,
                isolation_level=None,
            )
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._refuse_newer(db)
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "delete":
                db.execute("PRAGMA journal_mode=DELETE")
            db.execute("PRAGMA synchronous=FULL")
            # no page reaches the file before COMMIT: a holder that finds its lock broken rolls back untouched
            db.execute("PRAGMA cache_spill=OFF")
        else:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA busy_timeout=60000")
            self._refuse_newer(db)
            _use_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        # status reads every run's row of the covering indexes (100,000 runs: tens of MB): a page cache that holds
        # them (a limit, not an allocation) saves a read system call per page
        db.execute("PRAGMA cache_size=-131072")
        return db

    @contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """The connection for one read or transaction: local, this process's own; shared, one opened under the
        lock directory for this use alone (nested uses share it)."""
        if not self.shared:
            assert self.db is not None
            yield self.db
            return
        if self._held is not None:
            yield self._held
            return
        assert self.lock is not None
        try:
            self.lock.acquire()
        except LockTimeout as e:
            raise UserError(
                f"the run store {str(self.path)!r} stays locked by {e.owner or 'another process'} "
                f"({self.lock.patience_s:.0f}s waited)",
                f"if no danlu of that host runs any more, remove the directory {str(e.path)!r}",
            ) from None
        try:
            self._held = self._connect()
            try:
                yield self._held
            finally:
                self._held.close()
                self._held = None
        finally:
            self.lock.release()

    def _refuse_newer(self, db: sqlite3.Connection) -> None:
        """UserError (db closed) when a newer danlu wrote the store: this one would misread it. Called before the
        connection changes anything (its journal mode), so that the file stays as the newer danlu left it."""
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            db.close()
            raise self._newer(version)

    def _newer(self, version: int) -> UserError:
        return UserError(
            f"the run store {str(self.path)!r} was written by a newer danlu: schema {version} is newer than "
            f"this danlu reads (up to schema {len(MIGRATIONS)})",
            "upgrade danlu, or point DANLU_STORE at another store (this one is left as it is)",
        )

    def _open_file(self, path: Path) -> sqlite3.Connection:
        """A plain connection to `path`, locked as the store's mode locks it (shared: not at all)."""
        if self.shared:
            return sqlite3.connect("file:" + urllib.parse.quote(str(path)) + "?vfs=unix-none", uri=True, timeout=60)
        return sqlite3.connect(path, timeout=60)

    def _keep_copy(self, version: int) -> Path:
        """Copy the store at schema `version` to store.sqlite.v<version>.bak, replacing an older copy of that schema.
        Called under the migration's lock: no one writes the store meanwhile. SQLite's backup API reads the store as
        its transactions left it; the copy is written under another name and renamed, so it is never torn."""
        target = self.path.with_name(f"{self.path.name}.v{version}.bak")
        partial = target.with_name(target.name + ".partial")
        try:
            partial.unlink(missing_ok=True)
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # the owner's only, as the store
            # a connection of its own: SQLite refuses to back up from one in a write transaction
            source = self._open_file(self.path)
            try:
                copy = self._open_file(partial)
                try:
                    source.backup(copy)
                finally:
                    copy.close()
            finally:
                source.close()
            os.replace(partial, target)
        except (OSError, sqlite3.Error) as e:
            partial.unlink(missing_ok=True)
            raise UserError(
                f"the run store {str(self.path)!r} was not upgraded from schema {version}: "
                f"a copy of it could not be written to {str(target)!r}: {e}",
                "make room next to the store (or fix its folder's permissions) and run danlu again",
            ) from None
        return target

    def _migrate(self) -> None:
        with self._use() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == len(MIGRATIONS):
                return
            db.create_function("danlu_output_dir", 3, _stored_output_dir)
            kept: Optional[Path] = None
            with self.tx():
                version = db.execute("PRAGMA user_version").fetchone()[0]  # re-read under the lock
                if version > len(MIGRATIONS):  # upgraded meanwhile by a newer danlu
                    raise self._newer(version)
                if 0 < version < len(MIGRATIONS):  # a fresh store (0) has nothing to keep
                    kept = self._keep_copy(version)
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in script.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version={number}")
            if kept is not None:
                print(
                    f"note: the run store was upgraded from schema {version} to {len(MIGRATIONS)}; "
                    f"the old one is kept at {kept}",
                    file=sys.stderr,
                    flush=True,
                )

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._use() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                if self.lock is not None and not self.lock.held():
                    db.execute("ROLLBACK")
                    raise UserError(
                        f"the run store's lock {str(self.lock.path)!r} was broken while this danlu held it "
                        "(judged stale: this process was stopped for over a minute); nothing was written",
                        "run the command again",
                    )
                db.execute("COMMIT")

    def close(self) -> None:
        if self.db is not None:
            self.db.close()

    # ---- writing -------------------------------------------------------------------------------
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
                    [
                        (
                            r.run,
                            name,
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
                            r.output_dir or output_dir_of(r.config, r.workdir, r.run_dir),
                        )
                        for r in runs
                    ],
                )
                db.executemany(
                    "INSERT INTO attempts "
                    "(run, attempt, token, array_task, script, command, state, partition, overrides, updated) "
                    "VALUES (?,1,?,?,?,?,'SUBMITTING',?,'[]',?)",
                    [(r.run, r.tag, r.array_task, r.script, r.command, r.partition, now) for r in runs],
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def sweep_exists(self, name: str) -> bool:
        with self._use() as db:
            return db.execute("SELECT 1 FROM sweeps WHERE sweep=?", (name,)).fetchone() is not None

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
                "INSERT INTO attempts "
                "(run, attempt, token, array_task, script, command, state, partition, overrides, updated) "
                "VALUES (?,?,?,?,?,?,'SUBMITTING',?,?,?)",
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
                        r.output_dir or output_dir_of(r.config, r.workdir, r.run_dir),
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

    def job_of(self, tag: str) -> Optional[str]:
        """The job id recorded for the job tagged `tag` (an array's own id), None while none is."""
        row = self._one("SELECT COALESCE(array_job_id, job_id) FROM attempts WHERE token=? LIMIT 1", (tag,))
        return row[0] if row else None

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

    def update_attempts(self, rows: Iterable[Dict[str, Any]]) -> int:
        """Each row: run, attempt, `final` (state/machine.py) and the columns that changed (None: unchanged).
        Returns how many attempts were changed (a final one never is)."""
        cols = self.UPDATED
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

    def updated_rows(
        self, rows: Sequence[sqlite3.Row], updates: Dict[str, Dict[str, Any]]
    ) -> Optional[List[sqlite3.Row]]:
        """`rows` (of the "brief" or "table" view) as the store has them after update_attempts applied every one of
        `updates` (run -> update), made here as the store made them (None keeps a column; a_partition: the
        attempt's partition, else the run's), instead of reading them all again. None when a run's row is not of
        the attempt its update is for."""
        if not rows:
            return list(rows)
        names = list(rows[0].keys())
        pos = {n: i for i, n in enumerate(names)}
        column = {"partition": "a_partition"}
        targets = [(pos[column.get(c, c)], c) for c in self.UPDATED + ("final",) if column.get(c, c) in pos]
        run, attempt = pos["run"], pos["attempt"]
        with self._use() as db:  # a cursor of the rows' columns: sqlite3.Row takes its names from it
            cur = db.execute("SELECT " + ", ".join(f'NULL AS "{n}"' for n in names) + " LIMIT 0")
        out = []
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
                    values[i] = _AFFINITY.get(c, str)(value)
            out.append(sqlite3.Row(cur, tuple(values)))
        return out

    def record_accounting(self, run: str, records: Dict[int, str]) -> None:
        """sacct's raw records of attempts of `run` (attempt -> lines): a record of what Slurm said, kept even
        for final states."""
        if records:
            with self.tx() as db:
                db.executemany(
                    "UPDATE attempts SET accounting=? WHERE run=? AND attempt=?",
                    [(raw, run, n) for n, raw in records.items()],
                )

    # ---- reading -------------------------------------------------------------------------------
    # The columns of each view of `latest`. "brief": what a refresh reconciles (state/machine.py step), not the
    # resolved config, overrides, script or command, whose text is most of a run's bytes (10,000 runs: 3x faster to
    # read without them). "table": what `danlu status` shows (views/table.py items); a refresh reads the brief
    # columns of the few runs still active itself. Each value read costs: 100,000 runs x 8 columns ~ 0.15 s.
    # a_partition in both: the partition the attempt ran in, else the run's (what the table shows).
    VIEWS = {
        "brief": (
            "r.run, r.sweep, r.idx, r.run_dir, r.nodes, r.partition, r.cluster_kind, r.created, a.attempt, "
            "a.job_id, a.array_job_id, a.array_task, a.state, a.reason, a.exit_code, a.nodelist, "
            "coalesce(a.partition, r.partition) AS a_partition, a.submitted, a.started, a.ended, a.elapsed, "
            "a.restarts, a.final, s.experiment"
        ),
        "table": (
            "r.run, r.sweep, r.run_dir, r.nodes, a.attempt, a.job_id, a.state, a.reason, a.exit_code, "
            "a.nodelist, coalesce(a.partition, r.partition) AS a_partition, a.elapsed, a.restarts, a.final, "
            "s.experiment"
        ),
        "full": (
            "r.*, a.attempt, a.token, a.job_id, a.array_job_id, a.array_task, a.script, a.command, a.state, "
            "a.reason, a.exit_code, a.nodelist, a.partition AS a_partition, a.submitted, a.started, a.ended, "
            "a.elapsed, a.restarts, a.final, a.overrides AS a_overrides, s.experiment"
        ),
    }

    def latest(self, sweeps: Sequence[str] = (), runs: Sequence[str] = (), view: str = "full") -> List[sqlite3.Row]:
        """The latest attempt of each run, joined with its run row, optionally filtered; the columns of `view`
        (VIEWS: "full", "brief" or "table")."""
        brief = view != "full"
        where, params = [], []
        if sweeps or runs:
            parts = []
            if sweeps:
                parts.append(f"r.sweep IN ({','.join('?' * len(sweeps))})")
                params += list(sweeps)
            if runs:
                parts.append(f"r.run IN ({','.join('?' * len(runs))})")
                params += list(runs)
            where.append("(" + " OR ".join(parts) + ")")
        cols = self.VIEWS[view] + (", r.created, r.idx " if where and view == "table" else " ")  # sorted below
        if brief:  # every attempt from the covering indexes (no correlated MAX per run), the latest kept below;
            # all runs: in runs_brief's order, which is the table's (created, sweep, idx): no sort
            sql = (
                "SELECT "
                + cols
                + "FROM runs r "
                + ("" if where else "INDEXED BY runs_brief ")
                + "JOIN attempts a ON a.run = r.run JOIN sweeps s ON s.sweep = r.sweep "
                + ("WHERE " + " AND ".join(where) if where else "ORDER BY r.created, r.sweep, r.idx")
            )
        else:
            sql = (
                "SELECT " + cols + "FROM runs r JOIN sweeps s ON s.sweep = r.sweep JOIN attempts a ON a.run = r.run "
                "AND a.attempt = (SELECT MAX(attempt) FROM attempts WHERE run = r.run) "
                + ("WHERE " + " AND ".join(where) if where else "")
            )
        # sorted here, not by ORDER BY: SQLite's sort of 10,000 wide rows takes longer than the query
        with self._use() as db:
            cur = db.execute(sql, params)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        a = names.index("attempt")
        if where or not brief:
            c, s, i = names.index("created"), names.index("sweep"), names.index("idx")
            rows.sort(key=lambda r: (r[c], r[s], r[i], r[a]))
        if brief:  # each run's latest attempt (a run's rows are next to each other)
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

    def active_job_ids(self) -> List[str]:
        """The Slurm job ids of every attempt not final yet (what a refresh will ask Slurm about), from an index."""
        with self._use() as db:
            return [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT job_id FROM attempts WHERE final = 0 AND job_id IS NOT "
                    "NULL AND job_id NOT LIKE 'local-%'"
                )
            ]

    def query(self, sql: str, params: Sequence[Any] = ()) -> List[sqlite3.Row]:
        with self._use() as db:
            return list(db.execute(sql, params))

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Optional[sqlite3.Row]:
        with self._use() as db:
            row: Optional[sqlite3.Row] = db.execute(sql, params).fetchone()
            return row

    def attempts(self, run: str) -> List[sqlite3.Row]:
        return self.query("SELECT * FROM attempts WHERE run=? ORDER BY attempt", (run,))

    def sweep(self, name: str) -> Optional[sqlite3.Row]:
        return self._one("SELECT * FROM sweeps WHERE sweep=?", (name,))

    def run(self, run: str) -> Optional[sqlite3.Row]:
        return self._one("SELECT * FROM runs WHERE run=?", (run,))

    def array_size(self, array_job_id: str) -> int:
        """How many attempts went out in the job array `array_job_id`."""
        row = self._one("SELECT COUNT(*) FROM attempts WHERE array_job_id=?", (array_job_id,))
        return int(row[0]) if row else 0

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
