"""An exclusive lock that holds across hosts sharing a network file system: `mkdir` of one directory.

mkdir is atomic on NFS, SMB and sshfs alike (the server creates the entry or refuses), where POSIX and BSD locks
may not reach the other hosts at all. The holder writes `<host> <pid>` into the directory. A lock left by a
process that died (SIGKILL inside a transaction) is broken: at once when its owner was a process of this host
that is gone, else once it is older than `stale_s` by the file server's clock (a store transaction lasts
milliseconds). Breaking renames the directory away first, so that two waiters never both take it.

Releasing renames the directory away too, then removes it: a waiter may have the owner file open at that moment,
and a network file system then keeps the unlinked file under a hidden name (NFS's `.nfs*`, FUSE's
`.fuse_hidden*`), which no rmdir gets past. What is left so is removed by a later holder.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Optional, Tuple

from .network_fs import host, server_now
from .procs import pid_alive

OWNER = "owner"


class LockTimeout(Exception):
    def __init__(self, path: Path, owner: str) -> None:
        super().__init__(f"{path} is held by {owner or 'an unknown process'}")
        self.path, self.owner = path, owner


class DirLock:
    def __init__(self, path: Path, patience_s: float = 60.0, stale_s: float = 60.0) -> None:
        self.path = Path(path)
        self.patience_s = patience_s
        self.stale_s = stale_s
        self.broken = 0  # stale locks this one broke (for the log and the tests)

    def __enter__(self) -> "DirLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        deadline = time.monotonic() + self.patience_s
        pause = 0.001
        while True:
            try:
                os.mkdir(self.path, 0o700)
            except FileExistsError:
                pass
            else:
                try:
                    (self.path / OWNER).write_text(f"{host()} {os.getpid()}\n")
                except OSError:
                    self.release()
                    raise
                self._sweep()
                return
            owner, age = self._owner()
            if self._stale(owner, age):
                self._break()
                continue
            if time.monotonic() > deadline:
                raise LockTimeout(self.path, owner)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def release(self) -> None:
        aside = self._aside("gone")
        try:
            os.rename(self.path, aside)
        except OSError:
            return
        _remove(aside)

    def _aside(self, why: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{why}-{uuid.uuid4().hex[:8]}")

    def _sweep(self) -> None:
        """Remove what earlier releases and breaks could not (held under the lock: no one else sweeps now)."""
        for left in list(self.path.parent.glob(f"{self.path.name}.gone-*")) + list(
            self.path.parent.glob(f"{self.path.name}.broken-*")
        ):
            _remove(left)

    def _owner(self) -> Tuple[str, Optional[float]]:
        """The owner line and the lock's age in seconds by the server's clock (None: just released)."""
        try:
            stamp = self.path.stat().st_mtime
        except FileNotFoundError:
            return "", None
        try:
            owner = (self.path / OWNER).read_text().strip()
        except OSError:
            owner = ""  # between its mkdir and its write: young, or its owner died right there
        try:
            age = server_now(self.path.parent) - stamp
        except OSError:
            age = 0.0
        return owner, age

    def _stale(self, owner: str, age: Optional[float]) -> bool:
        if age is None:
            return False
        parts = owner.split()
        if len(parts) == 2 and parts[0] == host() and parts[1].isdigit() and not pid_alive(int(parts[1])):
            return True
        return age > self.stale_s

    def _break(self) -> None:
        aside = self._aside("broken")
        try:
            os.rename(self.path, aside)
        except OSError:
            return  # another waiter broke it first
        self.broken += 1
        _remove(aside)


def _remove(path: Path) -> None:
    """Remove a directory that another process may be removing at the same moment (a release and a sweep):
    whatever is gone already is fine (rmtree's ignore_errors misses a directory that vanishes under it)."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass
