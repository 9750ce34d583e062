"""Where the store lives and how it is shared there (network_fs.store_mode):
* on a local disk: WAL mode, one connection per process; readers never block writers;
* on a network file system (an NFS home that several login nodes share): a rollback journal, no SQLite
  locking at all, and every read or transaction inside a lock directory (dir_lock.py) on a connection
  opened for it and closed before the lock is given back, so each host reads what the others wrote and
  no two hosts ever write at once. WAL is unsafe there (its shared memory does not span hosts), and so are
  POSIX locks wherever the file system does not carry them to the server.
"""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from ..dir_lock import DirLock, LockTimeout
from ..errors import UserError
from ..network_fs import ENV as STORE_FS_ENV
from ..network_fs import forced_mode, store_mode
from ..paths import data_home
from .schema import refuse_newer


def default_path() -> Path:
    return Path(os.environ.get("DANLU_STORE") or data_home() / "store.sqlite").expanduser()


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


@contextmanager
def unreadable_as_user_error(path: Path) -> Iterator[None]:
    """A store SQLite cannot read (opened or migrated inside) is bad input: a UserError with a hint."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        raise UserError(
            f"the run store {str(path)!r} is unreadable: {e}",
            "move the file aside (it may be corrupted) or point DANLU_STORE at another store",
        ) from None


class Connection:
    """The store's file opened in its mode: the connection of each read and transaction, and on a network file
    system the lock directory around it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.mode, self.mode_why = _mode_for(self.path)
        self.shared = self.mode == "network"
        self.lock = DirLock(self.path.with_name(self.path.name + ".lock")) if self.shared else None
        self._held: Optional[sqlite3.Connection] = None  # shared: the connection of the lock held now
        self.db: Optional[sqlite3.Connection] = None  # local: this process's one connection
        if not self.shared:
            with unreadable_as_user_error(self.path):
                self.db = self._connect()
            # closed at exit too (`danlu` ends with os._exit, launcher/cli entry): the last connection's close
            # checkpoints the WAL and removes it; left open, the next process rebuilds the WAL's index from the
            # whole file and copies all of it into the database again (100,000 runs: +0.1-0.4 s per command)
            weakref.finalize(self, self.db.close)

    def _connect(self) -> sqlite3.Connection:
        db = self._connect_shared() if self.shared else self._connect_local()
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        # status reads every run's row of the covering indexes (100,000 runs: tens of MB): a page cache that holds
        # them (a limit, not an allocation) saves a read system call per page
        db.execute("PRAGMA cache_size=-131072")
        return db

    def _connect_shared(self) -> sqlite3.Connection:
        # no SQLite locking (the lock directory is the lock); exclusive locking mode also opens a store a
        # local-disk danlu left in WAL mode, which becomes a rollback-journal store here
        db = sqlite3.connect(
            "file:" + urllib.parse.quote(str(self.path)) + "?vfs=unix-none",
            uri=True,
            timeout=60,
            isolation_level=None,
        )
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        refuse_newer(db, self.path)
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "delete":
            db.execute("PRAGMA journal_mode=DELETE")
        db.execute("PRAGMA synchronous=FULL")
        # no page reaches the file before COMMIT: a holder that finds its lock broken rolls back untouched
        db.execute("PRAGMA cache_spill=OFF")
        return db

    def _connect_local(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.execute("PRAGMA busy_timeout=60000")
        refuse_newer(db, self.path)
        _use_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    @contextmanager
    def use(self) -> Iterator[sqlite3.Connection]:
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

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (`BEGIN IMMEDIATE`): committed when the block ends, rolled back when it raises.
        Shared, it commits only while the lock directory is still this process's."""
        with self.use() as db:
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

    def open_file(self, path: Path) -> sqlite3.Connection:
        """A plain connection to `path`, locked as the store's mode locks it (shared: not at all)."""
        if self.shared:
            return sqlite3.connect("file:" + urllib.parse.quote(str(path)) + "?vfs=unix-none", uri=True, timeout=60)
        return sqlite3.connect(path, timeout=60)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
