"""The code store's contents: each file's bytes once, named by their SHA-256, and trees of hard links to them.

An object is written under a temporary name and renamed into place, read-only; the bytes hashed are the bytes
written (one read of the source), so an object's name always matches its content. A tree is built in a temporary
folder and renamed into place: a tree that exists is complete. Objects are never hard links to the user's files,
whose later edits would then reach the snapshot.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from .store_layout import CodeLayout

# entry kinds: a file, an executable file, a symlink as the workdir has it; a link back to the workdir for a file left
# out for its size (LIVE) and for an entry git ignores (IGNORED: not part of the snapshot's key)
FILE, EXECUTABLE, SYMLINK, LIVE, IGNORED = "f", "x", "l", "w", "i"


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the tree, '/'-separated
    kind: str  # FILE, EXECUTABLE, SYMLINK, LIVE or IGNORED
    ref: str  # the SHA-256 of a file; the target of a symlink; the live path of a LIVE or IGNORED entry
    size: int = 0

    def row(self) -> List[object]:
        return [self.path, self.kind, self.ref, self.size]


def unique_temp(layout: CodeLayout, what: str) -> Path:
    layout.tmp_dir.mkdir(parents=True, exist_ok=True)
    return layout.tmp_dir / f"{what}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _into_place(layout: CodeLayout, temp: str, sha: str, executable: bool) -> int:
    """Rename a written object into place, read-only: its size (0 when the store had it already)."""
    target = layout.object_path(sha, executable)
    if os.path.exists(target):
        return 0
    os.chmod(temp, 0o555 if executable else 0o444)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    written = os.stat(temp).st_size
    os.replace(temp, target)
    return written


def store_object(layout: CodeLayout, source: str, executable: bool) -> Tuple[str, int]:
    """Copy `source` into the store (unless its content is there), hashing the bytes it copies: (its SHA-256, bytes
    written)."""
    temp = str(unique_temp(layout, "object"))
    digest = hashlib.sha256()
    try:
        with open(source, "rb") as src, open(temp, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
        sha = digest.hexdigest()
        return sha, _into_place(layout, temp, sha, executable)
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def store_hashed_object(
    layout: CodeLayout, source: str, sha: str, executable: bool, hashed: os.stat_result, settled_ns: int
) -> Tuple[str, int]:
    """Copy `source`, whose SHA-256 was read as `sha` while it stood as `hashed`, into the store: (the SHA-256 of the
    bytes stored, bytes written). A file unchanged since then (same inode, size, mtime and ctime, the kernel's
    ctime telling any write) and older than `settled_ns` is copied by the kernel without a second read; any other
    file is hashed as it is copied, and the caller compares."""
    if max(hashed.st_mtime_ns, hashed.st_ctime_ns) >= settled_ns:
        return store_object(layout, source, executable)
    target = layout.object_path(sha, executable)
    folder = os.path.dirname(target)
    temp = f"{folder}/.{sha}.{os.getpid()}.{next(_COUNTER)}"
    try:
        _kernel_copy(source, temp, 0o555 if executable else 0o444, folder)
        if not _same_file(os.stat(source), hashed):
            return store_object(layout, source, executable)  # written to since it was hashed
        os.rename(temp, target)
        return sha, hashed.st_size
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)


_COUNTER = itertools.count()


def _kernel_copy(source: str, target: str, mode: int, folder: str) -> None:
    """Copy a file's bytes by the kernel (no pass through Python), into a new file made with its final mode."""
    src = os.open(source, os.O_RDONLY)
    try:
        try:
            dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            size = os.fstat(src).st_size
            sent = 0
            while sent < size:
                n = os.sendfile(dst, src, sent, size - sent)
                if n == 0:
                    break
                sent += n
        finally:
            os.close(dst)
    finally:
        os.close(src)


def hash_file(source: str) -> str:
    digest = hashlib.sha256()
    with open(source, "rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _place(layout: CodeLayout, entry: Entry, target: str) -> None:
    if entry.kind in (SYMLINK, LIVE, IGNORED):
        os.symlink(entry.ref, target)
        return
    source = layout.object_path(entry.ref, entry.kind == EXECUTABLE)
    try:
        os.link(source, target)
    except OSError as e:
        if e.errno not in (errno.EMLINK, errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.ENOSYS):
            raise
        shutil.copy2(source, target)  # too many links to one object (or links refused): a copy of its own


def build_tree(layout: CodeLayout, key: str, entries: List[Entry]) -> bool:
    """The tree of `key` (True when this call built it). Another danlu building the same one at once is fine."""
    tree = layout.tree(key)
    if tree.exists():
        try:
            os.utime(tree)  # in use again: `danlu gc` keeps trees used lately
        except OSError:
            pass  # removed meanwhile (the rename below puts it back) or not ours to touch
        else:
            return False
    temp = unique_temp(layout, "tree")
    top = str(temp)
    made = {""}
    temp.mkdir()
    for entry in entries:
        parent = entry.path.rpartition("/")[0]
        if parent not in made:
            os.makedirs(f"{top}/{parent}", exist_ok=True)
            made.add(parent)
        _place(layout, entry, f"{top}/{entry.path}")
    tree.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(temp, tree)
    except OSError as e:
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        shutil.rmtree(temp)  # built meanwhile by another danlu: the same content
        return False
    return True


def write_json_atomically(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    temp.write_text(json.dumps(data, sort_keys=True))
    os.replace(temp, path)


class StatCache:
    """size/mtime/inode/ctime -> SHA-256 of a source folder's files, so unchanged files are not read again.

    A file changed less than RACY_S before the cache is written may change again within the same timestamp: its
    hash is not kept, and the next snapshot reads it again.
    """

    RACY_S = 2.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: Dict[str, List[int | str]] = {}
        self.changed = False
        try:
            self.entries = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    @staticmethod
    def _stamp(st: os.stat_result) -> List[int | str]:
        return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]

    def get(self, rel: str, st: os.stat_result) -> Optional[str]:
        hit = self.entries.get(rel)
        if hit is not None and hit[:4] == self._stamp(st):
            return str(hit[4])
        return None

    def put(self, rel: str, st: os.stat_result, sha: str) -> None:
        if max(st.st_mtime_ns, st.st_ctime_ns) > (time.time() - self.RACY_S) * 1e9:
            if self.entries.pop(rel, None) is not None:
                self.changed = True
            return
        stamp = self._stamp(st) + [sha]
        if self.entries.get(rel) != stamp:
            self.entries[rel] = stamp
            self.changed = True

    def keep_only(self, names: Iterator[str]) -> None:
        wanted = set(names)
        for gone in [k for k in self.entries if k not in wanted]:
            del self.entries[gone]
            self.changed = True

    def save(self) -> None:
        if self.changed:
            write_json_atomically(self.path, self.entries)
