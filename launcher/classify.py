"""Why did a run end? From Slurm's state, exit code and the tail of the run's logs."""

from __future__ import annotations

import pwd
import re
from pathlib import Path
from typing import Iterable, List, Optional

_PY_EXC = re.compile(r"^(?:\[[\w-]+\]:\s*)*((?:[A-Za-z_][\w.]*)?(?:Error|Exception|Interrupt)(?::\s.*)?)\s*$")
_COMM = re.compile(r"NCCL (?:error|WARN)|ProcessGroupNCCL|ProcessGroupGloo|gloo|Connection (?:closed|reset) by peer|"
                   r"DistNetworkError|DistBackendError|RendezvousError", re.IGNORECASE)
_CUDA_OOM = re.compile(r"CUDA out of memory|torch\.(?:cuda\.)?OutOfMemoryError", re.IGNORECASE)
_HOST_OOM = re.compile(r"oom[-_ ]kill|Out Of Memory|MemoryError|Killed process", re.IGNORECASE)


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


def _user(uid_text: str) -> str:
    try:
        return pwd.getpwuid(int(uid_text)).pw_name
    except (ValueError, KeyError):
        return uid_text


def classify(state: str, exit_code: str, nodelist: str, log_lines: List[str]) -> Optional[str]:
    """A short reason for a finished run that did not complete (None when it completed)."""
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
    text = "\n".join(log_lines)
    missing = re.search(r"cannot start '([^']+)'", text)
    if missing:
        return f"command not found: {missing.group(1)} (is its environment activated? see env=)"
    if _CUDA_OOM.search(text):
        return "CUDA out of memory"
    if base == "OUT_OF_MEMORY" or _HOST_OOM.search(text):
        return "host out of memory"
    exceptions = [m.group(1).strip() for ln in log_lines if (m := _PY_EXC.match(ln.strip()))]
    root = [e for e in exceptions if not _COMM.search(e) and "ChildFailedError" not in e and not e.startswith("KeyboardInterrupt")]
    if root:
        return root[0][:160]
    if _COMM.search(text):
        return "communication error (NCCL/gloo)"
    if exceptions:
        return exceptions[0][:160]
    if exit_code and exit_code not in ("0:0", "0"):
        return f"non-zero exit ({exit_code})"
    return base.lower() or None
