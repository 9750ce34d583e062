"""Which file system a path is on, and whether several hosts may share it (NFS homes on login nodes).

SQLite's WAL mode needs shared memory that every process of the database can map, which holds on one host only,
and its POSIX locks are only as good as the file system's lock protocol (none at all across sshfs mounts, often
broken on old NFS setups). The run store (store/) asks `store_mode` and, on a network file system, uses a
rollback journal under a lock directory of its own (dir_lock.py), with a fresh connection per transaction so that
each one reads what the other hosts wrote (close-to-open consistency).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

# fstype names as /proc/self/mountinfo spells them; a FUSE file system is "fuse.<name>"
NETWORK_FS_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ncpfs",
        "afs",
        "9p",
        "lustre",
        "gpfs",
        "beegfs",
        "ceph",
        "glusterfs",
        "ocfs2",
        "gfs2",
        "panfs",
        "pvfs2",
        "orangefs",
        "wekafs",
        "davfs",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.ceph-fuse",
        "fuse.cephfs",
        "fuse.gcsfuse",
        "fuse.s3fs",
        "fuse.rclone",
        "fuse.juicefs",
        "fuse.weka",
        "fuse.lustre",
        "fuse.beegfs",
    }
)

MODES = ("auto", "local", "network")
ENV = "DANLU_STORE_FS"  # auto (default): from the mount table; local / network: as said (e.g. on the NFS server)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> List[Tuple[str, str]]:
    """(mount point, fstype) of each line of /proc/<pid>/mountinfo, in the order of the file (later mounts last)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        mounts.append((_unescape(fields[4]), tail[0]))
    return mounts


def filesystem_of(path: Path) -> Tuple[str, str]:
    """(fstype, mount point) of the file system holding `path` (or its nearest existing parent), from this
    process's mount table."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return "unknown", "/"
    return mount_of(os.path.realpath(p), mountinfo)


def mount_of(real: str, mountinfo: str) -> Tuple[str, str]:
    """(fstype, mount point) of the longest mount point over the resolved path `real` in `mountinfo`'s lines;
    of equal ones, the last mounted."""
    best = ("unknown", "/")
    best_len = -1
    for point, fstype in parse_mountinfo(mountinfo):
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best_len:
            best, best_len = (fstype, point), len(point)
    return best


def is_network(fstype: str) -> bool:
    return fstype in NETWORK_FS_TYPES


def forced_mode() -> Optional[str]:
    """ "local" or "network" when DANLU_STORE_FS says so; None to detect."""
    forced = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if forced not in MODES:
        from .errors import UserError

        raise UserError(
            f"{ENV}={forced!r} is not one of {', '.join(MODES)}",
            f"unset {ENV} to detect the file system, or set it to local or network",
        )
    return None if forced == "auto" else forced


def store_mode(path: Path) -> Tuple[str, str]:
    """("network" | "local", why) for a store at `path`: DANLU_STORE_FS if set, else from the mount table."""
    forced = forced_mode()
    if forced is not None:
        return forced, f"{ENV}={forced}"
    fstype, point = filesystem_of(path)
    return ("network" if is_network(fstype) else "local"), f"{fstype} at {point}"


def host() -> str:
    return socket.gethostname()


def server_now(directory: Path) -> float:
    """The time as the file system's server sees it (the mtime of a file just written there): the clock that
    stamps other hosts' files, which the login node's own clock may not agree with."""
    fd, name = tempfile.mkstemp(prefix=".now-", dir=directory)
    try:
        os.write(fd, b"0")
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        os.unlink(name)
