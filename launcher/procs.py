"""Whether a process of this host still lives (login side: the local executor's runs, lock owners), and the job
id of a local run, which names the host its process runs on."""

from __future__ import annotations

import os
import re
import socket
from typing import NamedTuple, Optional

LOCAL_PREFIX = "local-"
# the characters of a host name (RFC 1123): none of them is one a job id must not have
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_PID = re.compile(r"[1-9][0-9]*")


class LocalJob(NamedTuple):
    """A local run's process: its host (None in an id that names none) and its pid."""

    host: Optional[str]
    pid: int

    @property
    def here(self) -> bool:
        """Whether this host may judge (and signal) the process.
        An id without a host is judged here, as it names no other host to ask.
        Judged nowhere, such a run would never end: never rerun, never cancelled."""
        return self.host is None or self.host == socket.gethostname()

    @property
    def where(self) -> str:
        return f"host {self.host}" if self.host else "this host"


def this_host() -> str:
    """This host's name as a local job id holds it; ValueError when a job id cannot hold it."""
    name = socket.gethostname()
    if not _HOST.fullmatch(name):
        raise ValueError(
            f"this host's name {name!r} has characters a local job id cannot hold (it takes A-Z, a-z, 0-9, '.' and "
            "'-'): local runs start on hosts so named"
        )
    return name


def local_job_id(pid: int) -> str:
    """The job id of a local run whose process is `pid` on this host: `local-<host>-<pid>`."""
    return f"{LOCAL_PREFIX}{this_host()}-{pid}"


def is_local(job_id: Optional[str]) -> bool:
    return bool(job_id) and str(job_id).startswith(LOCAL_PREFIX)


def parse_local_job_id(job_id: Optional[str]) -> Optional[LocalJob]:
    """The host and pid of a local job id; `local-<pid>` names no host. None for a Slurm job id or a malformed one."""
    if not is_local(job_id):
        return None
    rest = str(job_id)[len(LOCAL_PREFIX) :]
    if _PID.fullmatch(rest):
        return LocalJob(None, int(rest))
    host, _, pid = rest.rpartition("-")
    if not _PID.fullmatch(pid) or not _HOST.fullmatch(host):
        return None
    return LocalJob(host, int(pid))


def pid_alive(pid: int) -> bool:
    """True while `pid` runs here; a zombie (ended, not yet reaped) is not alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def descendants(pid: int) -> list[int]:
    """Every process started under `pid` (children, theirs, ...), from /proc: those a local run's shell started."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def terminate(pid: int, sig: int) -> None:
    """Send `sig` to a local run: its process group when `pid` leads one, else `pid` and every process under it
    (the local executor's shell shares danlu's group, as Slurm signals every process of a job on scancel)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except ProcessLookupError:
        return
    for p in [pid, *descendants(pid)]:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass
