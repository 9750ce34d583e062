"""Did the ranks form one world? Read from the process table, whatever the program or library.

A rank that is part of a torch.distributed world (gloo, NCCL) holds TCP sockets of its process group: it listens
for its peers (gloo's pairs, NCCL's bootstrap) or is connected to the rendezvous store at $MASTER_PORT. A rank that
never had one trained alone — for example `accelerate launch --multi_gpu` on a node without GPUs and without
ACCELERATE_USE_CPU, where every rank reports DistributedType.NO and trains an independent copy into the same output
dir. The agent looks at its ranks twice a second until each has been seen in a world; a program that then ends with
exit 0 while a rank never was is reported, not COMPLETED.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, List, Optional, Set

LISTEN, ESTABLISHED = "0A", "01"


def _socket_inodes(pid: int) -> Set[str]:
    out: Set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _master_port(pid: int) -> Optional[int]:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"MASTER_PORT="):
            value = item[len(b"MASTER_PORT=") :]
            return int(value) if value.isdigit() else None
    return None


def _parent(pid: int) -> Optional[int]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def _own_socket_inodes(pid: int) -> Set[str]:
    """The sockets `pid` holds that its parent does not: a child forked by the launcher holds the launcher's
    sockets (its rendezvous store's listening one) until it executes the program."""
    inodes = _socket_inodes(pid)
    parent = _parent(pid)
    return inodes - _socket_inodes(parent) if inodes and parent else inodes


def in_a_world(pid: int) -> bool:
    """True if process `pid` holds a listening TCP socket or a connection to its $MASTER_PORT of its own."""
    inodes = _own_socket_inodes(pid)
    if not inodes:
        return False
    port = _master_port(pid)
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) < 10 or parts[9] not in inodes:
                        continue
                    local, remote = (int(a.rsplit(":", 1)[1], 16) for a in (parts[1], parts[2]))
                    if parts[3] == LISTEN or (port is not None and port in (local, remote)):
                        return True
        except OSError:
            continue
    return False


class WorldWatch:
    """Remembers which of this node's training processes were ever seen in a world."""

    def __init__(
        self, ranks: Callable[[], List[int]], running: Callable[[], bool], expected: int, every: float = 0.5
    ) -> None:
        self._ranks, self._running, self._expected, self._every = ranks, running, expected, every
        self.seen: Set[int] = set()
        self.joined: Set[int] = set()
        self._stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while self._running() and not self._stop.wait(self._every):
            pids = self._ranks()
            self.seen.update(pids)
            self.joined.update(p for p in pids if p not in self.joined and in_a_world(p))
            if len(self.joined) >= self._expected:
                return

    def close(self) -> None:
        self._stop.set()

    def alone(self) -> List[int]:
        """The training processes seen running that never joined a world."""
        return sorted(self.seen - self.joined)
