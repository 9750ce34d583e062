"""Slurm's job state names as danlu uses them, with squeue's short forms."""

from __future__ import annotations

TERMINAL = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
        "UNSUBMITTED",
    }
)
ACTIVE = frozenset(
    {
        "SUBMITTING",
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "CONFIGURING",
        "COMPLETING",
        "SUSPENDED",
        "RESIZING",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "UNKNOWN",
    }
)
SHORT = {
    "PENDING": "PD",
    "RUNNING": "R",
    "COMPLETING": "CG",
    "COMPLETED": "CD",
    "FAILED": "F",
    "CANCELLED": "CA",
    "TIMEOUT": "TO",
    "OUT_OF_MEMORY": "OOM",
    "NODE_FAIL": "NF",
    "PREEMPTED": "PR",
    "BOOT_FAIL": "BF",
    "DEADLINE": "DL",
    "REQUEUED": "RQ",
    "SUSPENDED": "S",
    "CONFIGURING": "CF",
    "UNKNOWN": "?",
    "SUBMITTING": "SB",
    "REQUEUE_HOLD": "RH",
    "UNSUBMITTED": "NS",
}
# what `danlu rerun` reruns by default (CANCELLED only when asked for)
RERUNNABLE = ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED")


def parse_states(text: str | None) -> set[str]:
    """'FAILED,to' -> {'FAILED', 'TIMEOUT'}: full or short names, any case."""
    wanted = {s.strip().upper() for s in (text or "").split(",") if s.strip()}
    return {s for s in wanted if s in SHORT} | {k for k, v in SHORT.items() if v in wanted}


def unknown_states(text: str | None) -> list[str]:
    return [
        s.strip().upper()
        for s in (text or "").split(",")
        if s.strip() and s.strip().upper() not in SHORT and s.strip().upper() not in SHORT.values()
    ]
