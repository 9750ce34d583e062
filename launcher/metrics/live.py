"""The latest step and metrics of running runs, for `danlu status`: the last step line in the tail of rank 0's
log of the run's latest start (one directory listing and one 4 KB read per running run, nothing parsed whole)."""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..layout import RANK0_LOGS, latest_restart_dirs
from .log_lines import tail_step
from .series import choose_metric


def latest(run_dir: str, attempt: int) -> Optional[Tuple[int, Dict[str, float]]]:
    """(step, {metric: value}) of the run's last step line so far, from its latest start that has one."""
    for restart in latest_restart_dirs(run_dir, attempt):  # a start that has only just begun: the one before it
        for name in RANK0_LOGS:
            got = tail_step(os.path.join(restart, name))
            if got is not None:
                return got
    return None


class Prefetch:
    """The tails of the runs the store has as RUNNING, read in a thread while the refresh waits for squeue and
    sacct (their processes, not this one, do that work): the table then needs only the runs that started since."""

    def __init__(self, rows: Iterable[Any]) -> None:
        rows = list(rows)
        if rows:  # by position: sqlite3.Row's lookup by name, 100,000 times, is slow
            names = list(rows[0].keys())
            st, rd = names.index("state"), names.index("run_dir")
            rows = [r for r in rows if r[st] == "RUNNING" and r[rd]]
        self._wanted = [(r["run_dir"], int(r["attempt"])) for r in rows]
        self.read: Dict[Tuple[str, int], Optional[Tuple[int, Dict[str, float]]]] = {}
        self._thread = threading.Thread(target=self._run, name="danlu-log-tails", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for key in self._wanted:
            self.read[key] = latest(*key)

    def result(self) -> Dict[Tuple[str, int], Optional[Tuple[int, Dict[str, float]]]]:
        self._thread.join()
        return self.read


def add_progress(items: List[Dict[str, Any]], early: Optional[Prefetch] = None) -> Optional[str]:
    """Give each RUNNING item its `step` and `metrics` (None where its logs have no step line yet); returns the
    metric the table shows (loss, else the first loss-like name, else the first one found). `early`: what a
    Prefetch read during the refresh (the rest is read now)."""
    names: List[str] = []
    done = early.result() if early is not None else {}
    for it in items:
        if it["state"] == "RUNNING" and it.get("run_dir"):
            key = (it["run_dir"], int(it["attempt"]))
            got = done[key] if key in done else latest(*key)
        else:
            got = None
        it["step"], it["metrics"] = got if got is not None else (None, None)
        if got is not None:
            names.extend(got[1])
    return choose_metric(names)
