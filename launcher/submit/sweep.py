"""Submitting a planned sweep or rerun: store rows written first, then the plan executed (execute.py)."""

from __future__ import annotations

import secrets
from typing import Any, Callable, Dict, List, Sequence, Tuple

from ..errors import UserError
from ..plan.planner import PlannedJob, store_rows
from ..timings import phase
from .execute import execute_all, git_state
from .recovery import token_lock


def submit_sweep(
    store: Any,
    token: str,
    base: str,
    explicit: bool,
    plan_for: Callable[[str], List[PlannedJob]],
    experiment: str,
    cluster: str,
    overrides: Sequence[str],
    argv: Sequence[str],
    sweep_dir: Callable[[str], str],
    sources: Dict[str, Any],
) -> Tuple[str, Dict[str, str], int]:
    """Reserve a sweep name (`base`, or `base-<4 hex>` unless explicit), record its runs as SUBMITTING, then submit
    exactly the plan made for that name. Returns (sweep, run id -> job id, number of jobs)."""
    with token_lock(store, token):  # held while this submission's SUBMITTING rows exist
        for _ in range(20):
            name = base if explicit else f"{base}-{secrets.token_hex(2)}"
            if store.sweep_exists(name):
                if explicit:
                    raise UserError(
                        f"a sweep named {name!r} exists already", "pick another --name, or rerun it with `danlu rerun`"
                    )
                continue
            jobs = plan_for(name)
            with phase("git"):
                rows = store_rows(jobs, git_state)
            with phase("store"):
                created = store.create_sweep(name, experiment, cluster, overrides, argv, sweep_dir(name), rows, sources)
            if created:
                break
            if explicit:
                raise UserError(f"a sweep named {name!r} exists already", "pick another --name")
        else:
            raise RuntimeError("could not reserve a sweep name")
        return name, execute_all(store, name, token, jobs), len(jobs)


def submit_rerun(
    store: Any, token: str, label: str, jobs: List[PlannedJob], overrides: Sequence[str], expect: Dict[str, int]
) -> Dict[str, str]:
    """New attempts of existing runs, if no other danlu got there first (each run's latest attempt is still
    `expect[run]`), then the plan executed."""
    with token_lock(store, token):
        if not store.add_attempts(store_rows(jobs), list(overrides), expect):
            raise UserError(
                "another danlu rerun of these runs got there first", "`danlu status` shows their new attempts"
            )
        return execute_all(store, label, token, jobs)
