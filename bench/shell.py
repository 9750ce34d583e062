"""The bench's own commands: run one (timed or not), cancel jobs, read the Slurm call trace and the sbatch shim's
log, ask the queue, wait for the controller and the nodes."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

Done = subprocess.CompletedProcess  # a finished command, its output as text


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(
    cmd: Sequence[str],
    env: Optional[Dict[str, str]] = None,
    check: bool = True,
    timeout: float = 600,
    cwd: Optional[Path] = None,
) -> Done:
    done = subprocess.run(
        list(cmd), capture_output=True, text=True, env=env, timeout=timeout, cwd=str(cwd) if cwd else None
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def timed(
    cmd: Sequence[str], env: Optional[Dict[str, str]] = None, check: bool = True, cwd: Optional[Path] = None
) -> Tuple[float, float, Done]:
    """(wall seconds, CPU seconds of the child and its children, completed process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = sh(cmd, env=env, check=check, cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def cancel(ids: Sequence[str], arrays: bool = False) -> None:
    """scancel our own job ids. arrays: cancel each pending array as a whole (`scancel 123_[0-1000]`), which
    leaves the controller one record for it instead of one per task (MaxJobCount is 10,000, shared)."""
    ids = [f"{i}_[0-1000]" if arrays else i for i in ids if i]
    for k in range(0, len(ids), 500):
        subprocess.run(["scancel", *ids[k : k + 500]], capture_output=True)


def trace_calls(path: Path) -> Dict[str, int]:
    """The Slurm commands danlu ran, by name, from its DANLU_TRACE_SLURM file; the file is reset."""
    calls: Dict[str, int] = {}
    for line in path.read_text().split() if path.exists() else []:
        calls[line] = calls.get(line, 0) + 1
    path.unlink(missing_ok=True)
    return calls


def slurm_calls(env: Dict[str, str]) -> Dict[str, int]:
    """trace_calls of the trace file `env` names (none: no calls)."""
    return trace_calls(Path(env.get("DANLU_TRACE_SLURM", "/nonexistent")))


def shim_calls(logf: Path) -> Tuple[int, Optional[float]]:
    """(number of sbatch calls, time the last one returned) from a shim log; the log is reset."""
    if not logf.exists():
        return 0, None
    lines = logf.read_text().splitlines()
    logf.unlink()
    starts = [ln for ln in lines if ln.startswith("start ")]
    ends = [float(ln.split()[1]) for ln in lines if ln.startswith("end ")]
    return len(starts), (max(ends) if ends else None)


def array_ids(runs: List[Dict[str, Any]]) -> List[str]:
    """The Slurm job ids of a submit's runs (`danlu submit --json`), one per array."""
    return sorted({r["job_id"].split("_")[0] for r in runs})


def squeue_count(job_ids: Sequence[str] = (), name: str = "") -> int:
    cmd = ["squeue", "-h", "-r", "-t", "all", "-o", "%i"]
    if job_ids:
        cmd += ["-j", ",".join(job_ids)]
    if name:
        cmd += ["-n", name]
    done = subprocess.run(cmd, capture_output=True, text=True)
    return len(done.stdout.split()) if done.returncode == 0 else 0


def job_state(job_id: str) -> str:
    """squeue's state of a job; GONE once squeue no longer lists it."""
    done = subprocess.run(["squeue", "-h", "-j", job_id, "-t", "all", "-o", "%T"], capture_output=True, text=True)
    out = done.stdout.split()
    return out[0] if out else "GONE"


def settle(timeout: float = 180) -> float:
    """Wait until the controller has nothing of ours to digest (cancelled jobs gone from squeue, slurmdbd's agent
    queue drained): right after 10,000 cancelled array tasks it answers sbatch 50x slower. Returns the wait."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        queued = sh(["squeue", "-h", "-o", "%i"], check=False).stdout.split()
        m = re.search(r"DBD Agent queue size:\s*(\d+)", sh(["sdiag"], check=False).stdout)
        if not queued and (m is None or int(m.group(1)) < 100):
            break
        time.sleep(2)
    return time.time() - t0


def wait_queue_empty(timeout: float = 120) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not sh(["squeue", "-h", "-o", "%i"], check=False).stdout.split():
            return True
        time.sleep(2)
    return False


def wait_nodes_idle(nodes: List[str], timeout: float = 120) -> None:
    """The previous job's nodes may still be completing: start the next timed job on idle nodes."""
    import slurm_helpers  # tests/slurm_helpers.py (bench/run.py puts tests/ on the path): the tests' node waits

    try:
        slurm_helpers.wait_nodes_idle(timeout=timeout, nodes=nodes)
    except TimeoutError as e:
        log(f"   {e}: measuring anyway")
