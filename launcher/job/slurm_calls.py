"""The Slurm commands a node agent runs from inside its job, with retries for a busy controller.

Each answer is read by a pure parser (tested on Slurm's own output without a cluster) and asked by a thin call.
Standard library only.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from typing import List, Optional, Tuple

# a Slurm command's failure that a moment later may not recur (a busy or restarting controller)
TRANSIENT = (
    "timed out",
    "Timed out",
    "Unable to contact",
    "Zero Bytes",
    "Connection refused",
    "Connection reset",
    "temporarily unavailable",
    "Resource temporarily",
)


def slurm(cmd: List[str], tries: int = 3) -> Optional["subprocess.CompletedProcess[str]"]:
    """Run a Slurm command from inside the job; a transient failure is tried again (1 s, then 2 s later), so a busy
    controller never ends the job. None when the command cannot run at all; else its last outcome."""
    if shutil.which(cmd[0]) is None:
        return None
    done = None
    for attempt in range(tries):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired as e:
            done = subprocess.CompletedProcess(cmd, 124, "", f"{cmd[0]}: timed out after {e.timeout:.0f}s")
        except OSError:
            return None
        if done.returncode == 0 or not any(m in done.stderr for m in TRANSIENT):
            return done
        if attempt + 1 < tries:
            time.sleep(attempt + 1.0)
    return done


def requeues_preempted(version_line: str) -> bool:
    """Whether the Slurm of `scontrol --version`'s line requeues, by itself, a job selected for preemption
    (PreemptMode=REQUEUE, with a GraceTime) that ends before its grace is over. Seen on the test clusters: 24.11
    and 26.05 do, 22.05 ends it for good (FAILED). Unknown: no, and the agent requeues it."""
    found = re.search(r"(\d+)\.\d+", version_line)
    return found is not None and int(found.group(1)) >= 24


@functools.lru_cache(maxsize=1)
def slurm_requeues_preempted_jobs() -> bool:
    """`requeues_preempted` for this node's Slurm, read once from `scontrol --version` (no call to slurmctld)."""
    done = slurm(["scontrol", "--version"], tries=1)
    return done is not None and done.returncode == 0 and requeues_preempted(done.stdout)


def parse_job_state(text: str, ok: bool) -> Tuple[Optional[str], bool]:
    """From `scontrol show job -o`'s line: the job's state (None unless the call succeeded), and whether it has been
    selected for preemption (its PreemptTime is set: during a partition's GraceTime it still shows RUNNING)."""
    state = re.search(r"\bJobState=(\S+)", text)
    preempt = re.search(r"\bPreemptTime=(\S+)", text)
    return (
        state.group(1) if state and ok else None,
        bool(preempt and preempt.group(1) not in ("None", "Unknown")),
    )


def job_state() -> Tuple[Optional[str], bool]:
    """This job's state as slurmctld has it now (one scontrol call) and whether it is being preempted; (None, False)
    if unknown."""
    job = os.environ.get("SLURM_JOB_ID")
    out = slurm(["scontrol", "show", "job", "-o", job]) if job else None
    if out is None:
        return None, False
    return parse_job_state(out.stdout, out.returncode == 0)


def job_end_time() -> Optional[float]:
    """When Slurm will end this job (its time limit): $DANLU_JOB_END (epoch seconds), which the batch script set
    for every task of the job without asking Slurm (templates/discovery.sh.j2); one squeue call only where no
    batch script did (an older script). None if unknown."""
    text = os.environ.get("DANLU_JOB_END")
    if text is not None:
        return float(text) if text.strip().isdigit() else None
    job = os.environ.get("SLURM_JOB_ID")
    done = slurm(["squeue", "-h", "-j", job, "-o", "%e"]) if job else None
    try:
        return time.mktime(time.strptime(done.stdout.strip(), "%Y-%m-%dT%H:%M:%S")) if done else None
    except (ValueError, OverflowError):
        return None


def requeue(job: str) -> Tuple[bool, str]:
    """Ask Slurm to requeue `job`: whether it did, and what to log of it."""
    done = slurm(["scontrol", "requeue", job])
    ok = done is not None and done.returncode == 0
    return ok, "ok" if ok else (done.stderr.strip() if done else "no scontrol")
