"""An exclusive lock that holds across hosts sharing a network file system: one directory, made whole by a rename.

A rename is atomic on NFS, SMB and sshfs alike (the server moves the entry or refuses), where POSIX and BSD locks
may not reach the other hosts at all. A taker prepares `<lock>.new-<token>` holding an `owner` file
(`<host> <pid> <token>`) and renames it to `<lock>`; the rename fails while another holder's lock is there (a
directory with a file in it is never replaced). So a lock never exists without its owner line, and the line names
one taking only.

A lock left by a process that died (SIGKILL inside a transaction) is broken: at once when its owner was a process
of this host that is gone, else once it is older than `stale_s` by the file server's clock (a store transaction
lasts milliseconds). Breaking happens under a second lock, `<lock>.break`, taken the same way: the breaker reads
the owner line again under it and moves the lock away only if it is still the one judged stale. Waiters that judged
the same dead owner therefore break it once, and never move a lock that a quicker waiter has taken since. The
breaker lock itself is broken by the same rule without a further lock: it is held for a few file operations.

A holder gives the lock back only while it still names that holder, and `held()` tells a holder whether its lock
was broken meanwhile (judged stale while it was suspended), so that it can abandon its work instead of writing
beside the new holder.

Releasing renames the directory away, then removes it: a waiter may have the owner file open at that moment, and
a network file system then keeps the unlinked file under a hidden name (NFS's `.nfs*`, FUSE's `.fuse_hidden*`),
which no rmdir gets past. What is left so is removed by a later holder.

With DANLU_LOCK_AUDIT naming a file, every taking, giving back and breaking is appended to it with the time of
this machine's monotonic clock, so that a test can prove no two processes held the lock at once
(tests/lock_audit.py reads it).
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
AUDIT_ENV = "DANLU_LOCK_AUDIT"
LEFTOVERS = ("gone", "broken", "new")  # `<lock>.<kind>-<token>`: what releases, breaks and takers leave


class LockTimeout(Exception):
    def __init__(self, path: Path, owner: str) -> None:
        super().__init__(f"{path} is held by {owner or 'an unknown process'}")
        self.path, self.owner = path, owner


class DirLock:
    def __init__(self, path: Path, patience_s: float = 90.0, stale_s: float = 60.0, guarded: bool = True) -> None:
        self.path = Path(path)
        self.patience_s = patience_s
        self.stale_s = stale_s
        self.guarded = guarded  # breaks happen under `<lock>.break` (False for that breaker lock itself)
        self.broken = 0  # stale locks this one broke (for the log and the tests)
        self.mine: Optional[str] = None  # the owner line while this process holds the lock

    def __enter__(self) -> "DirLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        line = f"{host()} {os.getpid()} {uuid.uuid4().hex}"
        new = self._prepare(line)
        deadline = time.monotonic() + self.patience_s
        pause = 0.001
        try:
            while True:
                if self._take(new, line):
                    self.mine = line
                    _audit("acquire", self.path, line)
                    self._sweep()
                    return
                owner, age = self._owner(self.path)
                if self._stale(owner, age):
                    self._break(owner)
                    continue
                if time.monotonic() > deadline:
                    raise LockTimeout(self.path, owner)
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
                if not new.exists():  # swept as stale while this process was stopped
                    new = self._prepare(line)
        except BaseException:
            _remove(new)
            raise

    def held(self) -> bool:
        """True while the lock still names this holder (False once it was broken as stale)."""
        return self.mine is not None and _owner_line(self.path) == self.mine

    def release(self) -> None:
        mine, self.mine = self.mine, None
        if mine is None:
            return
        _audit("release", self.path, mine)
        if _owner_line(self.path) != mine:
            return  # broken as stale meanwhile: what is there now is another holder's
        aside = self._aside("gone")
        try:
            os.rename(self.path, aside)
        except OSError:
            return
        if _owner_line(aside) != mine:
            _put_back(aside, self.path)  # taken over between the check and the rename
        _remove(aside)

    def _prepare(self, line: str) -> Path:
        """`<lock>.new-<token>` with the owner line in it: the lock, once renamed into place."""
        new = self._aside("new")
        os.mkdir(new, 0o700)
        with open(new / OWNER, "x") as f:
            f.write(line + "\n")
        return new

    def _take(self, new: Path, line: str) -> bool:
        """Rename the prepared lock into place; False while another holder's lock is there."""
        try:
            os.rename(new, self.path)
        except OSError:
            # the rename may also have happened with its reply lost (NFS retries a rename and reports the retry)
            return _owner_line(self.path) == line
        return True

    def _aside(self, kind: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{kind}-{uuid.uuid4().hex[:12]}")

    def _sweep(self) -> None:
        """Remove what earlier releases, breaks and takers could not (held under the lock: no one else sweeps
        now). A taker's unfinished `.new-*` is removed only once stale: a live taker may be about to rename it."""
        names = [self.path.name, f"{self.path.name}.break"] if self.guarded else [self.path.name]
        prefixes = tuple(f"{name}.{kind}-" for name in names for kind in LEFTOVERS)
        try:
            entries = os.listdir(self.path.parent)  # one listing: each costs a round trip on NFS
        except OSError:
            return
        for entry in entries:
            if entry.startswith(prefixes):
                left = self.path.parent / entry
                if ".new-" not in entry or self._stale(*self._owner(left)):
                    _remove(left)

    def _owner(self, path: Path) -> Tuple[str, Optional[float]]:
        """The owner line of the lock at `path` and its age in seconds by the server's clock (None: gone)."""
        try:
            stamp = path.stat().st_mtime
        except FileNotFoundError:
            return "", None
        owner = _owner_line(path)
        try:
            age = server_now(self.path.parent) - stamp
        except OSError:
            age = 0.0
        return owner, age

    def _stale(self, owner: str, age: Optional[float]) -> bool:
        if age is None:
            return False
        parts = owner.split()
        if len(parts) >= 2 and parts[0] == host() and parts[1].isdigit() and not pid_alive(int(parts[1])):
            return True
        return age > self.stale_s

    def _break(self, judged: str) -> None:
        """Move away the lock judged stale while it names `judged`, under the breaker lock."""
        if not self.guarded:
            self._move_away(judged)
            return
        breaker = DirLock(self.path.with_name(self.path.name + ".break"), self.patience_s, self.stale_s, guarded=False)
        breaker.acquire()
        try:
            if _owner_line(self.path) == judged:
                self._move_away(judged)
        finally:
            breaker.release()

    def _move_away(self, judged: str) -> None:
        aside = self._aside("broken")
        _audit("break", self.path, judged)  # before the move: this process may be killed right after it
        try:
            os.rename(self.path, aside)
        except OSError:
            return  # given back or broken meanwhile
        taken = _owner_line(aside)
        if taken != judged:
            # its stale holder gave it back and another took it between the check and the rename
            _put_back(aside, self.path)
            return
        self.broken += 1
        _remove(aside)


def _owner_line(path: Path) -> str:
    try:
        return (path / OWNER).read_text().strip()
    except OSError:
        return ""


def _put_back(aside: Path, path: Path) -> None:
    """Return a lock moved away by mistake to its place, unless a new one is there already (a directory with an
    owner file is never replaced by a rename): its holder's `held()` then says it lost the lock."""
    try:
        os.rename(aside, path)
    except OSError:
        pass


def _audit(event: str, path: Path, line: str) -> None:
    target = os.environ.get(AUDIT_ENV)
    if not target:
        return
    token = line.split()[-1] if line.split() else "-"
    record = f"{event} {path.name} {token} {time.monotonic_ns()}\n".encode()
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, record)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Remove a directory that another process may be removing at the same moment (a release and a sweep):
    whatever is gone already is fine (rmtree's ignore_errors misses a directory that vanishes under it)."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass
