"""A local run's job id: `local-<host>-<pid>`, the process of the run on the host that started it. Only the local
backend (local_backend.py) reads or makes one; the rest of danlu knows a run's backend from its record."""

from __future__ import annotations

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


def parse_local_job_id(job_id: Optional[str]) -> Optional[LocalJob]:
    """The host and pid of a local job id; `local-<pid>` names no host. None for a Slurm job id or a malformed one."""
    if not job_id or not str(job_id).startswith(LOCAL_PREFIX):
        return None
    rest = str(job_id)[len(LOCAL_PREFIX) :]
    if _PID.fullmatch(rest):
        return LocalJob(None, int(rest))
    host, _, pid = rest.rpartition("-")
    if not _PID.fullmatch(pid) or not _HOST.fullmatch(host):
        return None
    return LocalJob(host, int(pid))
