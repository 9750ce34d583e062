"""Whether a process of this host still lives (login side: the local executor's runs, lock owners), and how to
stop one with what it started. A local run's job id is the local backend's (launcher/backends/local_jobs.py)."""

from __future__ import annotations

import os


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
