"""`danlu gc`: the code snapshots no run names any more, and the file contents no snapshot holds, removed.

A snapshot (its tree and its manifest) goes when no attempt of the store names its key (the attempt's own code or
its danlu job side, every attempt) and its tree was last built or reused more than `older_than_days` ago: a submit
writes its snapshots before it records its runs, and reusing a tree touches it. An object goes when no tree links
it any more (its own name is its only link) and it was written as long ago. Entries of tmp/ a day old are what a
stopped danlu left; cache/ stays.

Only the current user's entries are removed; other users' are kept. A tree is moved into tmp/ before it is
deleted, so a tree in trees/ is always whole. Symlinks (a tree's links back to the workdir) are removed, never
followed.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..errors import UserError
from ..words import counted
from .objects import unique_temp
from .snapshot import human
from .store_layout import CodeLayout

DAY_S = 86400.0
Inode = Tuple[int, int]  # (st_dev, st_ino)


@dataclass
class Collected:
    """What gc did (or, in a dry run, would do) to one code store."""

    store: Path
    trees_removed: int = 0
    objects_removed: int = 0
    bytes_freed: int = 0
    trees_kept: int = 0

    def as_json(self) -> Dict[str, object]:
        return {
            "store": str(self.store),
            "trees_removed": self.trees_removed,
            "objects_removed": self.objects_removed,
            "bytes_freed": self.bytes_freed,
            "trees_kept": self.trees_kept,
        }

    def line(self, dry_run: bool) -> str:
        return (
            f"{self.store}: {'would remove' if dry_run else 'removed'} {counted(self.trees_removed, 'snapshot')}, "
            f"{counted(self.objects_removed, 'file')} ({human(self.bytes_freed)}); "
            f"kept {counted(self.trees_kept, 'snapshot')} in use"
        )


def code_stores(run_dirs: Iterable[str]) -> List[CodeLayout]:
    """The code store of each distinct runs_dir of `run_dirs` that exists (one that does not is skipped)."""
    runs_dirs = dict.fromkeys(Path(d).parent.parent for d in run_dirs)  # one look at each, however many runs
    layouts = dict.fromkeys(CodeLayout.of_runs_dir(r) for r in runs_dirs)
    return [layout for layout in layouts if layout.root.is_dir()]


def _entries(folder: Path) -> List[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _lstat(entry: os.DirEntry[str]) -> Optional[os.stat_result]:
    """The entry's own stat (None once another gc removed it)."""
    try:
        return entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None


def _removable(st: os.stat_result, cutoff: float) -> bool:
    """The current user's, and last changed before `cutoff`."""
    return st.st_uid == os.getuid() and st.st_mtime < cutoff


def _links_in(tree: Path, links: Dict[Inode, int]) -> None:
    """Count the hard links `tree` holds, per file (os.walk does not follow symlinks)."""
    for folder, _dirs, files in os.walk(tree):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                links[key] = links.get(key, 0) + 1


def _remove_tree(layout: CodeLayout, key: str, cutoff: float) -> bool:
    """Move the tree of `key` out of trees/, then remove its manifest and the tree (False: it was used meanwhile,
    and is back in place, or it is gone already)."""
    away = unique_temp(layout, f"gc-{key[:16]}")
    try:
        os.rename(layout.tree(key), away)
    except FileNotFoundError:
        return False
    if os.lstat(away).st_mtime >= cutoff:  # a submit reused it between the look and the move
        try:
            os.rename(away, layout.tree(key))
            return False
        except OSError:
            pass  # built again meanwhile: this copy is not needed
    manifest = layout.manifest(key)
    try:
        if manifest.lstat().st_uid == os.getuid():
            manifest.unlink()
    except FileNotFoundError:
        pass
    shutil.rmtree(away, ignore_errors=True)
    return True


def _trees(layout: CodeLayout, referenced: Set[str], cutoff: float, dry_run: bool, out: Collected) -> Dict[Inode, int]:
    """Remove the snapshots no attempt names, unused since `cutoff`; in a dry run, the links they hold instead."""
    links: Dict[Inode, int] = {}
    for entry in _entries(layout.trees_dir):
        st = _lstat(entry)
        if st is None or not stat.S_ISDIR(st.st_mode):
            continue  # gone, or not a tree: nothing danlu wrote
        if entry.name in referenced or not _removable(st, cutoff):
            out.trees_kept += 1
        elif dry_run:
            _links_in(Path(entry.path), links)
            out.trees_removed += 1
        elif _remove_tree(layout, entry.name, cutoff):
            out.trees_removed += 1
        else:
            out.trees_kept += 1
    return links


def _objects(layout: CodeLayout, links: Dict[Inode, int], cutoff: float, dry_run: bool, out: Collected) -> None:
    """Remove the objects no tree links (in a dry run, once the trees' `links` are gone), written before `cutoff`."""
    for folder in _entries(layout.objects_dir):
        if not folder.is_dir(follow_symlinks=False):
            continue
        for entry in _entries(Path(folder.path)):
            st = _lstat(entry)
            if st is None or not stat.S_ISREG(st.st_mode) or not _removable(st, cutoff):
                continue
            if st.st_nlink - links.get((st.st_dev, st.st_ino), 0) != 1:
                continue
            if not dry_run:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
            out.objects_removed += 1
            out.bytes_freed += st.st_size


def _tmp(layout: CodeLayout, cutoff: float) -> None:
    """Remove what a stopped danlu left in tmp/ (entries of the current user changed before `cutoff`)."""
    for entry in _entries(layout.tmp_dir):
        st = _lstat(entry)
        if st is None or not _removable(st, cutoff):
            continue
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)


def collect(
    layout: CodeLayout, referenced: Set[str], older_than_days: float, dry_run: bool, now: Optional[float] = None
) -> Collected:
    """gc of one code store: `referenced`, the keys the store's attempts name."""
    now = time.time() if now is None else now
    cutoff = now - older_than_days * DAY_S
    out = Collected(layout.root)
    links = _trees(layout, referenced, cutoff, dry_run, out)
    _objects(layout, links, cutoff, dry_run, out)
    if not dry_run:
        _tmp(layout, now - DAY_S)
    return out


def collect_all(
    run_dirs: Iterable[str], referenced: Set[str], older_than_days: float, dry_run: bool
) -> List[Collected]:
    """gc of the code store of every runs_dir of `run_dirs` (the store's runs')."""
    if older_than_days < 0:
        raise UserError(
            f"--older-than {older_than_days:g} is negative",
            "give the days a snapshot stays after its last use (default 1; 0: remove every unused one now)",
        )
    return [collect(layout, referenced, older_than_days, dry_run) for layout in code_stores(run_dirs)]
