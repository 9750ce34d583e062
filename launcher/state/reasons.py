"""Why did a run end? From Slurm's state, exit code and the tail of the run's logs."""

from __future__ import annotations

import pwd
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple, Union

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
# the agent's line that ends a hung job: where the ranks were (when their stacks were read), then the silence
_HUNG = re.compile(
    r"hung: (?:(?P<where>[^;\n]+); )?"
    r"(?P<silence>no output from the training processes on (?P<host>\S+) for (?P<secs>\d+)s "
    r"\(launch\.hang_timeout_s=\d+\))"
)
_ALONE = re.compile(r"trained alone, not in one world of (\d+)")
_MAX_REQUEUES = re.compile(r"not requeued: (\d+) requeues? already \(requeue.max_requeues=(\d+)\)")
# the job side's refusals before it unpickles its node agent (job/protocol.py)
_NOT_SUBMITTED = re.compile(r"danlu: (the (?:node agent|batch script) .+): refusing to run it")
_OTHER_PROTOCOL = re.compile(r"danlu: this job was (submitted by .+; the job side here is .+: resubmit it)")
# srun could not start a task on a node (its slurmd died or cannot be reached)
_LAUNCH = re.compile(r"srun: error: Task launch for \S+ failed on node (\S+): (.+)")
# the agent could not start the launcher or the program
_CANNOT_START = re.compile(r"cannot start '([^']+)'")
# argparse's `parser.error` (`train.py: error: unrecognized arguments: --beta_dop=2500`), after its usage lines;
# jsonargparse's (LightningCLI) may print a bare `error: Parser key "config": ...`. Not Slurm's own `srun: error:`.
_USAGE = re.compile(r"^(?:\[[\w-]+\]:\s*)*(?:([\w.\-]+): )?error: (.+)$")
_USAGE_LINE = re.compile(r"^(?:\[[\w-]+\]:\s*)*usage: ", re.MULTILINE)
_NOT_PROGRAM = ("srun", "slurmstepd", "sbatch", "salloc")
# exceptions that report another failure, not the cause: a launcher noticing its child died, a
# rank being told to stop because a peer failed
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
    said = _slurm_verdict(state, base, nodelist)
    if said is not None:
        return said
    if callable(log_lines):
        log_lines = log_lines()
    return _log_reason(base, log_lines) or _exit_reason(base, exit_code)


# the reason of an end that Slurm's state alone tells, whatever the logs say (CANCELLED and NODE_FAIL add who, where)
_SLURM_WORDS = {
    "TIMEOUT": "time limit reached",
    "PREEMPTED": "preempted",
    "BOOT_FAIL": "node failed to boot",
    "DEADLINE": "deadline reached",
}


def _slurm_verdict(state: str, base: str, nodelist: str) -> Optional[str]:
    """The reason Slurm's state gives by itself (None: the logs must tell)."""
    if base == "CANCELLED":
        who = state.split(" by ", 1)[1] if " by " in state else ""
        return f"cancelled by {_user(who)}" if who else "cancelled"
    if base == "NODE_FAIL":
        return f"node failure ({nodelist})" if nodelist else "node failure"
    return _SLURM_WORDS.get(base)


def _other_danlu(found: re.Match[str], text: str) -> str:
    """The job side is another danlu than the one that submitted the job."""
    return _cut(found.group(1))


def _pickle_refused(found: re.Match[str], text: str) -> str:
    """The pickle is not the one submitted: nothing of it ran."""
    return _cut(re.sub(r"/\S*/", "", found.group(1)) + ": refused to run it")


def _requeues_ran_out(found: re.Match[str], text: str) -> str:
    """Stopped for the time limit (or preemption) once more than danlu may requeue."""
    count, most = found.group(1), found.group(2)
    return (
        f"stopped at the time limit after {count} requeue{'' if count == '1' else 's'} "
        f"(requeue.max_requeues={most})"
        + ("; each start began at step 0 (no checkpoint danlu knows of)" if FROM_ZERO in text else "")
    )


def _hung(found: re.Match[str], text: str) -> str:
    """The agent ended a silent job (launch.hang_timeout_s): where its ranks were, when their stacks were read."""
    if found.group("where"):
        return _cut(f"hung: {found.group('where')}; no output on {found.group('host')} for {found.group('secs')}s")
    return _cut("hung: " + found.group("silence"))


def _trained_alone(found: re.Match[str], text: str) -> str:
    """Exit 0, but its ranks never formed one torch.distributed world."""
    return (
        f"the ranks trained as independent copies, not one world of {found.group(1)} (no process group; "
        f"on CPU-only nodes accelerate needs ACCELERATE_USE_CPU or Accelerator(cpu=True))"
    )


def _command_not_found(found: re.Match[str], text: str) -> str:
    """The agent could not start the launcher or the program."""
    return f"command not found: {found.group(1)} (is its environment activated? see env=)"


def _task_launch_failed(found: re.Match[str], text: str) -> str:
    """Slurm could not start a task: the node, not the program."""
    return _cut(f"task launch failed on {found.group(1)}: {found.group(2).strip()}")


# what danlu, Slurm or the agent wrote into the logs that names the end by itself: (its pattern, its wording), the first
# that matches wins
_LOG_RULES: Tuple[Tuple[re.Pattern[str], Callable[[re.Match[str], str], str]], ...] = (
    (_OTHER_PROTOCOL, _other_danlu),
    (_NOT_SUBMITTED, _pickle_refused),
    (_MAX_REQUEUES, _requeues_ran_out),
    (_HUNG, _hung),
    (_ALONE, _trained_alone),
    (_CANNOT_START, _command_not_found),
    (_LAUNCH, _task_launch_failed),
)


def _log_reason(base: str, log_lines: List[str]) -> Optional[str]:
    """The reason the logs give (None: they give none), in order: danlu's and Slurm's own words, the program's usage
    error, running out of memory, the exception that caused the others."""
    text = "\n".join(log_lines)
    for pattern, wording in _LOG_RULES:
        found = pattern.search(text)
        if found:
            return wording(found, text)
    usage = _usage_error(log_lines) if _USAGE_LINE.search(text) else None
    if usage:  # the program refused its command line: its own words, not the launcher's exit code
        return _cut(usage)
    if _CUDA_OOM.search(text):
        return "CUDA out of memory"
    if base == "OUT_OF_MEMORY" or _HOST_OOM.search(text):
        return "host out of memory"
    return _exception_reason(log_lines)


def _exception_reason(log_lines: List[str]) -> Optional[str]:
    """The Python exception that caused the failure: the first one that reports neither another failure nor a broken
    connection; else the first communication error (a peer died without saying why, e.g. killed); else the last."""
    exceptions = [m.group(1).strip() for ln in log_lines if (m := _PY_EXC.match(ln.strip()))]
    causes = [e for e in exceptions if not _NOT_CAUSE.search(e)]
    root = [e for e in causes if not _COMM.search(e)]
    if root:
        return _cut(root[0])
    if causes:
        return _cut("communication error (NCCL/gloo): " + causes[0])
    comm = next((ln.strip() for ln in log_lines if _COMM_LINE.search(ln)), None)
    if comm:
        return _cut("communication error (NCCL/gloo): " + re.sub(r"^(?:\[[\w-]+\]:\s*)*", "", comm))
    if exceptions:
        return _cut(exceptions[-1])
    return None


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
