"""Small polling helpers for tests that talk to the test Slurm cluster (tests/cluster/up.sh)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Iterator

# Terminal job states as sacct prints them ("CANCELLED by 0" is matched by prefix).
TERMINAL_STATES = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
)

# sinfo %T states of a node that is up and answering.
_UP_NODE_STATES = {"idle", "mixed", "allocated", "completing"}


def _run(args: list[str]) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout


def job_states(job_id: str | int) -> list[str]:
    """States of a job's allocation lines from sacct ([] if sacct does not know it yet).

    One entry for a plain job, one per task for a job array id. "CANCELLED by 0" -> "CANCELLED".
    """
    out = _run(["sacct", "-j", str(job_id), "-X", "-n", "-P", "-o", "State"])
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def job_state(job_id: str | int) -> str:
    """Current state of a (non-array) job from sacct, or '' if sacct does not know it yet."""
    states = job_states(job_id)
    return states[-1] if states else ""


def is_terminal(state: str) -> bool:
    return any(state.startswith(s) for s in TERMINAL_STATES)


# squeue states of a job that is not finished yet (e.g. requeued after preemption/node failure).
_ACTIVE_STATES = {
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SUSPENDED",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "SPECIAL_EXIT",
}


def queue_states(job_ids: list[str], env: dict[str, str] | None = None) -> list[str] | None:
    """squeue's states of those jobs (or array tasks) still in the queue: [] when none is, None when squeue could
    not say (a failure other than "Invalid job id", which means already purged from slurmctld)."""
    try:
        proc = subprocess.run(
            ["squeue", "-h", "-j", ",".join(map(str, job_ids)), "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return [] if "Invalid job id" in proc.stderr else None
    return proc.stdout.split()


def in_queue(job_id: str | int) -> bool:
    """True while squeue still has the job (or any task of an array) in a non-final state."""
    return any(state in _ACTIVE_STATES for state in queue_states([str(job_id)]) or [])


def wait_for_job(job_id: str | int, timeout: float = 120, poll: float = 0.5, final: bool = True) -> str:
    """Poll sacct until the job reaches a terminal state; return it (e.g. 'COMPLETED').

    final=True (default): a terminal sacct state only counts once squeue no longer has the job
    pending/running. A job requeued by Slurm (preempted, NODE_FAIL) shows PREEMPTED/NODE_FAIL
    in sacct for a few seconds while it is already pending again; this waits for the run that
    really ends. final=False returns the first terminal state sacct shows.
    For an array job id, waits until every task is terminal and returns the state if they all
    agree, else the distinct states joined by ',' (e.g. 'COMPLETED,FAILED').
    Raises TimeoutError with the last seen states if the job does not end within `timeout` s.
    """
    deadline = time.monotonic() + timeout
    states: list[str] = []
    while True:
        try:
            states = job_states(job_id)
            if states and all(is_terminal(s) for s in states):
                if not final or not in_queue(job_id):
                    return ",".join(sorted(set(states)))
        except subprocess.SubprocessError:
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"job {job_id} not finished after {timeout} s (last states {states})")
        time.sleep(poll)


def node_states() -> dict[str, str]:
    """{node: sinfo long state}, e.g. {'node1': 'idle', 'node3': 'down*'}."""
    out = _run(["sinfo", "-h", "-N", "-o", "%N %T"])
    states: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def _wait_nodes(accepted: set[str], what: str, timeout: float, nodes: list[str] | None, poll: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while True:
        try:
            states = node_states()
        except subprocess.SubprocessError:
            pass
        wanted = {n: s for n, s in states.items() if nodes is None or n in nodes}
        if wanted and (nodes is None or set(nodes) <= set(wanted)) and all(s in accepted for s in wanted.values()):
            return wanted
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nodes not {what} after {timeout} s: {states}")
        time.sleep(poll)


def wait_nodes_idle(timeout: float = 60, nodes: list[str] | None = None, poll: float = 0.5) -> dict[str, str]:
    """Wait until all (or the given) nodes are idle; return their states.

    Raises TimeoutError with the last seen states otherwise.
    """
    return _wait_nodes({"idle"}, "idle", timeout, nodes, poll)


def wait_nodes_up(timeout: float = 60, nodes: list[str] | None = None, poll: float = 0.5) -> dict[str, str]:
    """Like wait_nodes_idle, but jobs may be running (idle/mixed/allocated/completing)."""
    return _wait_nodes(_UP_NODE_STATES, "up", timeout, nodes, poll)


@contextlib.contextmanager
def next_job_ids_from(first: int, state_dir: Path) -> Iterator[None]:
    """Make the controller number the next jobs from `first` (FirstJobId, then `scontrol reconfigure`), holding
    the cluster lock so no other session's up.sh rewrites the config meanwhile; the config is restored after.
    Job ids only ever grow: jobs submitted after this keep numbering from the new value.
    From Slurm 23.11 a reconfigure restarts every slurmd, and a batch launch that meets the restart is lost: Slurm
    requeues that job a minute later. So enter with no job of yours starting, and leave once the jobs submitted
    inside have started."""
    from conftest import cluster_root

    inside = re.search(r"SLURM_CONF\s*=\s*(\S+)", _run(["scontrol", "show", "config"])).group(1)
    conf = cluster_root() / inside.lstrip("/")
    original = conf.read_text()
    with open(state_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _replace(conf, original + f"\nFirstJobId={first}\n")
            _run(["scontrol", "reconfigure"])
            yield
        finally:
            _replace(conf, original)
            _run(["scontrol", "reconfigure"])
            fcntl.flock(lock, fcntl.LOCK_UN)


def _replace(path: Path, text: str) -> None:
    """Write a file whole (rename): a job reading slurm.conf meanwhile (scontrol in its batch script) never sees it
    empty or half written."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(path.stat().st_mode & 0o777)
    tmp.replace(path)


def node_processes(node: str, job_ids: list[str], with_step_daemons: bool = False) -> set[int]:
    """Pids of what the jobs run on one test node of the cluster the tests talk to, and optionally the slurmstepd
    parents of those tasks. All test nodes share this host: a process is found by SLURMD_NODENAME and SLURM_JOB_ID
    in its environment, and by its root directory. The three versions' clusters number their jobs alike, so the
    same job id on another version's node2 is another job."""
    from conftest import cluster_root

    root = str(cluster_root())
    found: set[int] = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if os.readlink(environ.parent / "root") != root:
                continue
        except OSError:
            continue
        try:
            env = dict(
                kv.split("=", 1) for kv in environ.read_bytes().decode(errors="replace").split("\0") if "=" in kv
            )
        except OSError:
            continue
        if env.get("SLURMD_NODENAME") != node or env.get("SLURM_JOB_ID") not in job_ids:
            continue
        try:
            if (environ.parent / "comm").read_text().strip() == "slurmstepd" and not with_step_daemons:
                continue
        except OSError:
            continue
        found.add(int(environ.parent.name))
        if with_step_daemons:
            try:
                ppid = int((environ.parent / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if "slurmstepd" in (Path("/proc") / str(ppid) / "cmdline").read_text():
                    found.add(ppid)
            except (OSError, ValueError):
                pass
    return found
