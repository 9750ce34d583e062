"""The latest step and metrics of running runs, for `danlu status`: the last step line in the tail of rank 0's
log of the run's latest start (one directory listing and one 4 KB read per running run, nothing parsed whole)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..layout import RunLayout
from .log_lines import rank0_logs, tail_step
from .series import choose_metric


def latest(run_dir: str, attempt: int) -> Optional[Tuple[int, Dict[str, float]]]:
    """(step, {metric: value}) of the run's last step line so far, from its latest start that has one."""
    restarts = RunLayout(Path(run_dir)).attempt(attempt).restarts()
    for restart in reversed(restarts[-2:]):  # a start that has only just begun: the one before it
        for log in rank0_logs(restart):
            got = tail_step(log)
            if got is not None:
                return got
    return None


def add_progress(items: List[Dict[str, Any]]) -> Optional[str]:
    """Give each RUNNING item its `step` and `metrics` (None where its logs have no step line yet); returns the
    metric the table shows (loss, else the first loss-like name, else the first one found)."""
    names: List[str] = []
    for it in items:
        got = latest(it["run_dir"], it["attempt"]) if it["state"] == "RUNNING" and it.get("run_dir") else None
        it["step"], it["metrics"] = got if got is not None else (None, None)
        if got is not None:
            names.extend(got[1])
    return choose_metric(names)
