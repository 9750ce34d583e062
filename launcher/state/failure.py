"""A failed run's words, shared by both sides: the log of the task that failed first, its last lines, and the
message that names them (the job side sends it as the job ends; `danlu notify` words the sweep's summary alike).
Standard library only."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from ..layout import AttemptLayout
from .reasons import tail_lines

TAIL_LINES = 20
LINE_CHARS = 300


def log_tail(path: Optional[Path], lines: int = TAIL_LINES) -> List[str]:
    """The last non-empty lines of a log, each cut to a readable length."""
    if path is None:
        return []
    found = [ln.rstrip() for ln in tail_lines([path], max_bytes=16_000) if ln.strip()]
    return [ln if len(ln) <= LINE_CHARS else ln[: LINE_CHARS - 3] + "..." for ln in found[-lines:]]


def failed_log(files: AttemptLayout) -> Optional[Path]:
    """The log of the task that failed first in the latest start, else that start's first log."""
    latest = files.latest()
    if latest is None:
        return None
    for tag in latest.failed_tags():
        if latest.log(tag).exists():
            return latest.log(tag)
    logs = latest.logs()
    return logs[0] if logs else None


def failure_text(
    run: str, sweep: str, state: str, reason: str, where: str, log: Optional[Path], tail: List[str]
) -> str:
    head = f"danlu: run {run} of sweep {sweep} {state}{where}: {reason}"
    if not tail:
        return head
    return head + f"\nlast lines of {log}:\n" + "\n".join(tail)
