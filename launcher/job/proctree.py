"""The node agent's process tree, read from /proc: the launcher it started, the ranks below it, and their ends.

The agent is a child subreaper (`become_subreaper`): ranks whose launcher died are re-parented to it, so every
process of the program stays its descendant and none is left behind. Linux only; standard library only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

Child = subprocess.Popen[bytes]  # the program the agent started (its output read as bytes)


def live_processes() -> Iterator[Tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process that is not a zombie, from /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            yield int(stat.parent.name), int(fields[1]), int(fields[2])


def children(ppid: int) -> List[int]:
    """Live (non-zombie) child processes of `ppid`."""
    return [pid for pid, parent, _ in live_processes() if parent == ppid]


def descendants(root: int) -> List[int]:
    """Live descendants of `root` (children, their children, ...)."""
    below: Dict[int, List[int]] = {}
    for pid, parent, _ in live_processes():
        below.setdefault(parent, []).append(pid)
    out, todo = [], list(below.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(below.get(pid, []))
    return out


def kill(pid: int, sig: int) -> None:
    """Send `sig` to one process; one that is gone or not ours is left alone."""
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def killpg(pid: int, sig: int) -> None:
    """Send `sig` to a process group; a group that is gone or not ours is left alone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def become_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants become this process's children (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def wait_descendants_gone(timeout: float) -> List[int]:
    """Wait until this process has no live descendant left; those still alive after `timeout`."""
    end = time.time() + timeout
    while True:
        left = descendants(os.getpid())
        if not left or time.time() >= end:
            return left
        time.sleep(0.2)


def kill_descendants() -> None:
    """SIGKILL every live descendant of this process."""
    for pid in descendants(os.getpid()):
        kill(pid, signal.SIGKILL)


def kill_program(child: Child) -> None:
    """SIGKILL the launcher's process group and every descendant of this agent (ranks in sessions of their own)."""
    killpg(child.pid, signal.SIGKILL)
    kill_descendants()


def kill_later(child: Child, after: float) -> None:
    """SIGKILL whatever of the program still runs `after` seconds from now (its group and every descendant)."""
    try:
        child.wait(timeout=after)
    except subprocess.TimeoutExpired:
        kill_program(child)
    kill_descendants()


def kill_ranks_after(child: Child, grace: float, stopped: Callable[[], bool]) -> None:
    """SIGKILL the launcher's ranks still alive after `grace` seconds (torch elastic starts each rank in a session
    of its own: the rank's whole group goes). The launcher itself is left to notice, report which rank failed first,
    and exit with its own code. Not when `stopped()` turns true meanwhile: the ranks then have the cluster's grace
    to checkpoint (the stop's own timer)."""
    end = time.time() + grace
    while time.time() < end:
        if child.poll() is not None or not children(child.pid) or stopped():
            return
        time.sleep(0.2)
    if child.poll() is not None or stopped():
        return
    for pid in children(child.pid):
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
