"""Freeze a workdir's code: its files (launcher/code/listing.py) into the code store, as one tree named by content.

The key is the SHA-256 of the manifest: every file's path, kind and content hash, the workdir, the commit and the
paths that differ from it. Unchanged code gives the same key, so ten submits of it, a sweep of 1,000 runs and their
reruns share one tree; a change of one file writes that file's bytes once, plus a tree of hard links.
danlu computes the key itself rather than asking git: untracked files and folders outside git are frozen too, and
the key names exactly the bytes that were copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

from ..errors import UserError
from .listing import Listing, linked_back, list_workdir, sizes
from .objects import (
    EXECUTABLE,
    FILE,
    IGNORED,
    LIVE,
    SYMLINK,
    Entry,
    StatCache,
    build_tree,
    hash_file,
    store_hashed_object,
    write_json_atomically,
)
from .store_layout import CodeLayout

MANIFEST_FORMAT = 1
MB = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_file_mb: float = 10.0  # a larger file is left in the workdir, with a warning naming it
    max_total_mb: float = 200.0  # a larger snapshot is refused, naming its largest files
    max_files: int = 20_000  # a workdir with more files to freeze is refused as soon as they are listed


@dataclass
class Snapshot:
    """One frozen workdir: its key and tree, what git said of it, and what freezing it cost."""

    key: str
    tree: Path
    workdir: Path
    commit: Optional[str]
    dirty: Optional[bool]
    files: FrozenSet[str]  # the frozen files' paths (what a program's args may name)
    total_bytes: int
    bytes_written: int = 0
    left_out: List[Tuple[str, int]] = field(default_factory=list)
    built: bool = False
    pending: Optional["_Pending"] = field(default=None, repr=False)  # what write_snapshot writes

    @property
    def short(self) -> str:
        return self.key[:12]

    def warnings(self) -> List[str]:
        if not self.left_out:
            return []
        named = ", ".join(f"{p} ({human(n)})" for p, n in self.left_out[:5])
        more = f" and {len(self.left_out) - 5} more" if len(self.left_out) > 5 else ""
        return [
            f"left out of the code snapshot of {self.workdir} (over code.max_file_mb): {named}{more}; the job "
            f"reads them from the workdir as they are then (list them in {self.workdir}/.danluignore to say so)"
        ]


def human(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", MB), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _too_large(workdir: Path, total: int, largest: Sequence[Tuple[str, int]], limits: Limits) -> UserError:
    named = ", ".join(f"{p} ({human(n)})" for p, n in largest[:3])
    return UserError(
        f"the code of {workdir} is {human(total)}, over code.max_total_mb={limits.max_total_mb:g}; largest: {named}",
        f"list data and outputs in {workdir}/.danluignore (gitignore syntax), or raise code.max_total_mb",
    )


def _entries(
    workdir: Path, listing: Listing, limits: Limits
) -> Tuple[List[Tuple[str, os.stat_result]], List[Entry], List[Tuple[str, int]]]:
    """(regular files to hash, symlink and live entries, files left out for their size)."""
    files: List[Tuple[str, os.stat_result]] = []
    others: List[Entry] = []
    left_out: List[Tuple[str, int]] = []
    for rel, st in sizes(workdir, listing.files).items():
        if stat.S_ISLNK(st.st_mode):
            others.append(Entry(rel, SYMLINK, os.readlink(workdir / rel)))
        elif not stat.S_ISREG(st.st_mode):
            continue  # an uninitialised submodule's empty folder, a socket
        elif st.st_size > limits.max_file_mb * MB:
            left_out.append((rel, st.st_size))
            others.append(Entry(rel, LIVE, str(workdir / rel)))
        else:
            files.append((rel, st))
    return files, others, sorted(left_out, key=lambda x: -x[1])


def _live_entries(workdir: Path, ignored: Sequence[str], frozen: Sequence[str]) -> List[Entry]:
    """The ignored entries as links back to the workdir, where no frozen file lies below them."""
    parents = {p for f in frozen for p in _parents(f)}
    taken = set(frozen)
    out = []
    for entry in linked_back(ignored):
        rel = entry.rstrip("/")
        if rel and rel not in parents and rel not in taken:
            out.append(Entry(rel, IGNORED, str(workdir / rel)))
    return out


def _parents(path: str) -> List[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class _Hasher:
    """Each file's SHA-256: from the stat cache when the file is unchanged, else read. Writes nothing."""

    def __init__(self, layout: CodeLayout, source: Path) -> None:
        self.cache = StatCache(layout.cache(source))
        self.source = str(source)
        self.read: Dict[str, os.stat_result] = {}  # the files read: their hash goes into the cache once written
        self.started_ns = time.time_ns()

    def sha(self, rel: str, st: os.stat_result) -> str:
        known = self.cache.get(rel, st)
        if known is not None:
            return known
        self.read[rel] = st
        return hash_file(f"{self.source}/{rel}")

    def save(self, entries: Sequence[Entry], stats: Dict[str, os.stat_result]) -> None:
        """Keep the hashes read in the stat cache (those of files that are settled: StatCache.put)."""
        for e in entries:
            if e.path in self.read:
                self.cache.put(e.path, stats[e.path], e.ref)
        self.cache.keep_only(iter(stats))
        self.cache.save()


def manifest_key(workdir: Path, commit: Optional[str], changed: Sequence[str], entries: Sequence[Entry]) -> str:
    """The snapshot's name. Links back to ignored entries are left out of it: outputs and data that appear in the
    workdir between two submits do not make another snapshot (the tree keeps the links it was built with)."""
    rows = [e.row() for e in entries if e.kind != IGNORED]
    text = json.dumps(
        {"workdir": str(workdir), "commit": commit, "changed": list(changed), "entries": rows},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def freeze_listing(
    layout: CodeLayout, workdir: Path, listing: Listing, limits: Limits, dry_run: bool = False
) -> Snapshot:
    """The snapshot of the listed files of `workdir`: its key at once, written unless `dry_run` (write_snapshot)."""
    files, others, left_out = _entries(workdir, listing, limits)
    total = sum(st.st_size for _, st in files)
    if total > limits.max_total_mb * MB:
        raise _too_large(workdir, total, sorted(((r, s.st_size) for r, s in files), key=lambda x: -x[1]), limits)
    hasher = _Hasher(layout, workdir)
    entries = [
        Entry(rel, EXECUTABLE if st.st_mode & stat.S_IXUSR else FILE, hasher.sha(rel, st), st.st_size)
        for rel, st in files
    ]
    entries += others + _live_entries(workdir, listing.ignored, [e.path for e in entries + others])
    entries.sort(key=lambda e: e.path)
    git = listing.git
    key = manifest_key(workdir, git.commit, git.changed, entries)
    snap = Snapshot(
        key, layout.tree(key), workdir, git.commit, git.dirty, frozenset(r for r, _ in files), total, 0, left_out
    )
    snap.pending = _Pending(layout, entries, list(git.changed), git.prefix, hasher, dict(files))
    if not dry_run:
        write_snapshot(snap)
    return snap


@dataclass
class _Pending:
    """What writing a snapshot needs: its entries, and the hashes to keep in the stat cache."""

    layout: CodeLayout
    entries: List[Entry]
    changed: List[str]
    prefix: str
    hasher: _Hasher
    stats: Dict[str, os.stat_result]


def changed_meanwhile(workdir: Path, rel: str) -> UserError:
    return UserError(
        f"{workdir / rel} changed while danlu froze the code",
        "submit again once nothing writes into the workdir's code",
    )


def pending_prefix(snap: Snapshot) -> str:
    return snap.pending.prefix if snap.pending is not None else ""


def write_snapshot(snap: Snapshot) -> None:
    """Write the objects the store lacks, the manifest and the tree of a snapshot frozen with `dry_run`."""
    pending = snap.pending
    if pending is None:
        return
    if not snap.tree.exists():
        _write_objects(snap, pending)
        manifest = pending.layout.manifest(snap.key)
        if not manifest.exists():
            write_json_atomically(manifest, _manifest(snap, pending.changed, pending.entries))
    snap.built = build_tree(pending.layout, snap.key, pending.entries)
    pending.hasher.save(pending.entries, pending.stats)


def _write_objects(snap: Snapshot, pending: "_Pending") -> None:
    """Store each file whose content the store lacks, as it was when it was hashed (else refused)."""
    layout, workdir = pending.layout, str(snap.workdir)
    settled = pending.hasher.started_ns - int(StatCache.RACY_S * 1e9)
    missing = [
        e
        for e in pending.entries
        if e.kind in (FILE, EXECUTABLE) and not os.path.exists(layout.object_path(e.ref, e.kind == EXECUTABLE))
    ]

    def store(e: Entry) -> int:
        source, st = f"{workdir}/{e.path}", pending.stats[e.path]
        sha, written = store_hashed_object(layout, source, e.ref, e.kind == EXECUTABLE, st, settled)
        if sha != e.ref:
            raise changed_meanwhile(snap.workdir, e.path)
        return written

    snap.bytes_written += sum(store(e) for e in missing)


def _manifest(snap: Snapshot, changed: Sequence[str], entries: Sequence[Entry]) -> Dict[str, object]:
    return {
        "format": MANIFEST_FORMAT,
        "key": snap.key,
        "workdir": str(snap.workdir),
        "commit": snap.commit,
        "dirty": snap.dirty,
        "changed": list(changed),
        "prefix": pending_prefix(snap),
        "entries": [e.row() for e in entries],
        "left_out": [list(x) for x in snap.left_out],
        "created": time.time(),
    }


def freeze_workdir(
    runs_dir: Path, workdir: Path, limits: Limits, dry_run: bool = False, excluded: Sequence[str] = ()
) -> Snapshot:
    """Freeze `workdir` into the code store of `runs_dir`. `excluded`: folders below the workdir never frozen."""
    layout = CodeLayout.of_runs_dir(runs_dir)
    listing = list_workdir(workdir, excluded, limits.max_files)
    return freeze_listing(layout, workdir, listing, limits, dry_run)


def read_manifest(runs_dir: Path, key: str) -> Optional[Dict[str, object]]:
    """The manifest of a snapshot (None when it is not in this runs_dir's store, e.g. removed by `danlu gc`)."""
    try:
        data = json.loads(CodeLayout.of_runs_dir(runs_dir).manifest(key).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
