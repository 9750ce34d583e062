"""Why did a run end? From Slurm's state, exit code and the tail of the run's logs."""

from __future__ import annotations

import pwd
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Union

from ..node_agent import FROM_ZERO

_PY_EXC = re.compile(r"^(?:\[[\w-]+\]:\s*)*((?:[A-Za-z_][\w.]*)?(?:Error|Exception|Interrupt)(?::\s.*)?)\s*$")
_COMM = re.compile(
    r"NCCL (?:error|WARN)|ncclInternalError|ncclSystemError|ncclRemoteError|ProcessGroupNCCL|"
    r"ProcessGroupGloo|gloo|Connection (?:closed|reset) by peer|DistNetworkError|DistBackendError|"
    r"RendezvousError|Watchdog caught collective operation timeout",
    re.IGNORECASE,
)
# a log line that by itself says collective communication broke (not merely mentions a backend)
_COMM_LINE = re.compile(
    r"NCCL (?:error|WARN)|ncclInternalError|ncclSystemError|ncclRemoteError|"
    r"Connection (?:closed|reset) by peer|DistNetworkError|DistBackendError|"
    r"Watchdog caught collective operation timeout",
    re.IGNORECASE,
)
_CUDA_OOM = re.compile(
    r"CUDA out of memory|torch\.(?:cuda\.)?OutOfMemoryError|CUDA error: out of memory", re.IGNORECASE
)
_HOST_OOM = re.compile(
    r"oom[-_ ]kill|out-of-memory handler|Out Of Memory|^MemoryError|\bMemoryError\b|Killed process",
    re.IGNORECASE | re.MULTILINE,
)
_HUNG = re.compile(r"(hung: no output from the training processes on \S+ for \d+s \(launch\.hang_timeout_s=\d+\))")
_ALONE = re.compile(r"trained alone, not in one world of (\d+)")
_MAX_REQUEUES = re.compile(r"not requeued: (\d+) requeues? already \(requeue.max_requeues=(\d+)\)")
# the job side's refusals before it unpickles its node agent (job/protocol.py)
_NOT_SUBMITTED = re.compile(r"danlu: (the (?:node agent|batch script) .+): refusing to run it")
_OTHER_PROTOCOL = re.compile(r"danlu: this job was (submitted by .+; the job side here is .+: resubmit it)")
# srun could not start a task on a node (its slurmd died or cannot be reached)
_LAUNCH = re.compile(r"srun: error: Task launch for \S+ failed on node (\S+): (.+)")
# exceptions that report another failure, not the cause: a launcher noticing its child died, a
# rank being told to stop because a peer failed
# argparse's `parser.error` (`train.py: error: unrecognized arguments: --beta_dop=2500`), after its usage lines;
# jsonargparse's (LightningCLI) may print a bare `error: Parser key "config": ...`. Not Slurm's own `srun: error:`.
_USAGE = re.compile(r"^(?:\[[\w-]+\]:\s*)*(?:([\w.\-]+): )?error: (.+)$")
_USAGE_LINE = re.compile(r"^(?:\[[\w-]+\]:\s*)*usage: ", re.MULTILINE)
_NOT_PROGRAM = ("srun", "slurmstepd", "sbatch", "salloc")
_NOT_CAUSE = re.compile(r"ChildFailedError|CalledProcessError|SignalException|^KeyboardInterrupt|SystemExit")


def tail_lines(paths: Iterable[Path], max_bytes: int = 64_000) -> List[str]:
    lines: List[str] = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - max_bytes))
                lines.extend(f.read().decode("utf-8", "replace").splitlines())
        except OSError:
            continue
    return lines


@lru_cache(maxsize=None)
def _user(uid_text: str) -> str:
    try:
        return pwd.getpwuid(int(uid_text)).pw_name
    except (ValueError, KeyError):
        return uid_text


def classify(
    state: str, exit_code: str, nodelist: str, log_lines: Union[List[str], Callable[[], List[str]]]
) -> Optional[str]:
    """A short reason for a finished run that did not complete (None when it completed).

    log_lines may be a function giving them: the logs are then read only when the state alone does not tell."""
    base = state.split()[0] if state else ""
    if base == "COMPLETED":
        return None
    if base == "CANCELLED":
        who = state.split(" by ", 1)[1] if " by " in state else ""
        return f"cancelled by {_user(who)}" if who else "cancelled"
    if base == "TIMEOUT":
        return "time limit reached"
    if base == "PREEMPTED":
        return "preempted"
    if base == "NODE_FAIL":
        return f"node failure ({nodelist})" if nodelist else "node failure"
    if base == "BOOT_FAIL":
        return "node failed to boot"
    if base == "DEADLINE":
        return "deadline reached"
    if callable(log_lines):
        log_lines = log_lines()
    text = "\n".join(log_lines)
    other = _OTHER_PROTOCOL.search(text)
    if other:  # the job side is another danlu than the one that submitted the job
        return _cut(other.group(1))
    refused = _NOT_SUBMITTED.search(text)
    if refused:  # the pickle is not the one submitted: nothing of it ran
        return _cut(re.sub(r"/\S*/", "", refused.group(1)) + ": refused to run it")
    limit = _MAX_REQUEUES.search(text)
    if limit:  # stopped for the time limit (or preemption) once more than danlu may requeue
        return (
            f"stopped at the time limit after {limit.group(1)} requeue{'' if limit.group(1) == '1' else 's'} "
            f"(requeue.max_requeues={limit.group(2)})"
            + ("; each start began at step 0 (no checkpoint danlu knows of)" if FROM_ZERO in text else "")
        )
    hung = _HUNG.search(text)
    if hung:  # the agent ended a silent job (launch.hang_timeout_s)
        return _cut(hung.group(1))
    alone = _ALONE.search(text)
    if alone:  # exit 0, but its ranks never formed one torch.distributed world
        return (
            f"the ranks trained as independent copies, not one world of {alone.group(1)} (no process group; "
            f"on CPU-only nodes accelerate needs ACCELERATE_USE_CPU or Accelerator(cpu=True))"
        )
    missing = re.search(r"cannot start '([^']+)'", text)
    if missing:
        return f"command not found: {missing.group(1)} (is its environment activated? see env=)"
    launch = _LAUNCH.search(text)
    if launch:  # Slurm could not start a task: the node, not the program
        return _cut(f"task launch failed on {launch.group(1)}: {launch.group(2).strip()}")
    usage = _usage_error(log_lines) if _USAGE_LINE.search(text) else None
    if usage:  # the program refused its command line: its own words, not the launcher's exit code
        return _cut(usage)
    if _CUDA_OOM.search(text):
        return "CUDA out of memory"
    if base == "OUT_OF_MEMORY" or _HOST_OOM.search(text):
        return "host out of memory"
    exceptions = [m.group(1).strip() for ln in log_lines if (m := _PY_EXC.match(ln.strip()))]
    causes = [e for e in exceptions if not _NOT_CAUSE.search(e)]
    root = [e for e in causes if not _COMM.search(e)]
    if root:
        return _cut(root[0])
    if causes:  # only communication errors: a peer died without saying why (e.g. killed)
        return _cut("communication error (NCCL/gloo): " + causes[0])
    comm = next((ln.strip() for ln in log_lines if _COMM_LINE.search(ln)), None)
    if comm:
        return _cut("communication error (NCCL/gloo): " + re.sub(r"^(?:\[[\w-]+\]:\s*)*", "", comm))
    if exceptions:
        return _cut(exceptions[-1])
    return _exit_reason(base, exit_code)


def _usage_error(log_lines: List[str]) -> Optional[str]:
    for line in log_lines:
        m = _USAGE.match(line.strip())
        if m and m.group(1) not in _NOT_PROGRAM:
            return f"usage error: {m.group(1) + ': ' if m.group(1) else ''}{m.group(2).strip()}"
    return None


def _cut(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exit_reason(base: str, exit_code: str) -> Optional[str]:
    """sacct's ExitCode is '<code>:<signal>'."""
    code, _, sig = (exit_code or "").partition(":")
    if sig and sig not in ("0", ""):
        return f"killed by signal {sig}"
    if code and code != "0":
        return f"non-zero exit ({code})"
    return base.lower() or None
