"""Who else can write the folders a submit (or a rerun) writes into: cluster.runs_dir, the folders above it and the
sweep's own folders.

A job unpickles and runs its node agents from `<sweep>/.submitit/` and runs `<sweep>/scripts/`. Whoever can put files
in a sweep folder, or swap it for one of their own, runs code as the researcher. So every folder danlu writes into
must be the researcher's, and not writable by group or others. runs_dir itself may be a shared folder with the
sticky bit (like /tmp): there nobody can rename or remove another user's sweep folder.

The folders above runs_dir are checked all the way up to /: whoever can write one of them (without its sticky bit)
can rename the folder below it away and put one of their own in its place. Each must be the researcher's or root's.
That is one lstat per folder on the path; stopping earlier, at a folder root owns, would trust its parent unseen.
A sweep's run folders are not checked: its node agents make them inside the sweep folder, which only its owner writes.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, List, Optional, Sequence, Set

from ..errors import UserError
from ..layout import SweepLayout, safe_name

if TYPE_CHECKING:
    from ..spec.options import RunSpec

_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH
_HINT = "point cluster.runs_dir at a folder only you can write (e.g. ~/danlu-runs, mode 700)"


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _wrong(st: os.stat_result, shared: bool) -> Optional[str]:
    """What makes a folder unsafe to write into, or None. `shared`: root may own it, and a sticky bit makes it
    safe to be writable by others (runs_dir and the folders above it)."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if st.st_uid != os.geteuid() and not (shared and st.st_uid == 0):
        return f"belongs to {_owner(st.st_uid)}"
    writers = [w for bit, w in ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "others")) if st.st_mode & bit]
    if writers and not (shared and st.st_mode & stat.S_ISVTX):
        sticky = " without the sticky bit" if shared else ""
        return f"is writable by {' and '.join(writers)} (mode {stat.S_IMODE(st.st_mode):o}){sticky}"
    return None


def _lstat(path: Path) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _problem(runs_dir: Path, sweep: Optional[str]) -> Optional[UserError]:
    """The first unsafe folder of a sweep under `runs_dir` (resolved): the sweep folder and its subfolders where
    they exist, runs_dir, then each folder above it."""
    for d in SweepLayout(runs_dir / sweep).dirs() if sweep is not None else ():
        st = _lstat(d)
        why = None if st is None else _wrong(st, shared=False)
        if why:
            fix = f"chmod go-w {d}" if why.startswith("is writable") else f"use another sweep name (--name), or {_HINT}"
            what = "the sweep folder" if d == runs_dir / str(sweep) else "the sweep's folder"
            return UserError(f"{what} {d} {why}: another user could change what your jobs run", fix)
    here = runs_dir
    while True:
        st = _lstat(here)
        if st is not None:  # a missing runs_dir (or parent of it) is made by danlu, mode 700
            why = _wrong(st, shared=True)
            if why:
                what = "cluster.runs_dir" if here == runs_dir else f"{here}, a folder above cluster.runs_dir"
                name = f" {here}" if here == runs_dir else ""
                mine = st.st_uid == os.geteuid()
                fix = f"chmod go-w {here} (or chmod +t {here} if others share it), or {_HINT}" if mine else _HINT
                return UserError(f"{what}{name} {why}: another user could change what your jobs run", fix)
        if here.parent == here:
            return None
        here = here.parent


def sweep_folder_problems(specs: Sequence[RunSpec], sweep: Optional[str]) -> List[UserError]:
    """The unsafe folders of a submit, at most one per runs_dir. `sweep`: the sweep's name if it is known before
    it is reserved (--name or the config's name); a name made up at submit is checked when its folder is made."""
    found: List[UserError] = []
    seen: Set[Path] = set()
    for spec in specs:
        runs_dir = Path(spec.cluster.runs_dir).expanduser().resolve()
        if runs_dir not in seen:
            seen.add(runs_dir)
            problem = _problem(runs_dir, sweep if safe_name(sweep) else None)
            if problem is not None:
                found.append(problem)
    return found


def refuse_unsafe_sweeps(roots: Iterable[Path]) -> None:
    """A rerun's sweep folders (each the folder of runs being rerun) and the folders above them, checked."""
    for root in sorted(set(roots)):
        problem = _problem(root.parent, root.name)
        if problem is not None:
            raise problem


def make_own_folder(path: Path) -> None:
    """Make a folder of a sweep (and any missing folder above it) with mode 700 whatever the umask. A folder that
    exists already, even one that appeared since the checks above, must be the researcher's and not writable by
    others."""
    missing = []
    here = path
    while _lstat(here) is None and here.parent != here:
        missing.append(here)
        here = here.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
            os.chmod(d, 0o700)  # the umask may have taken bits of 700 away
        except FileExistsError:
            pass  # made since the lstat above: checked below like any folder that was there
    why = _wrong(os.lstat(path), shared=False)
    if why:
        raise UserError(f"the folder {path} {why}: another user could change what your jobs run", _HINT)
