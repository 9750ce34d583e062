"""Crash safety of the CLI: jobs Slurm accepted but danlu never recorded are found and recorded.

Every submission holds an exclusive lock file named by its token while it runs. A SUBMITTING
attempt whose token lock is free belongs to a danlu that died: its job is looked up by the
`danlu:<token>:<n>` comment (squeue, then sacct) and recorded; if Slurm never saw it, the
attempt is dropped. Nothing is submitted twice and no accepted job stays untracked.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List

from . import slurm
from .store import Store
COMMENT_PREFIX = "danlu:"  # as launcher.submit writes it (not imported: status must start fast)


def _lock_path(store: Store, token: str) -> Path:
    return store.path.parent / "locks" / token


@contextmanager
def token_lock(store: Store, token: str) -> Iterator[None]:
    path = _lock_path(store, token)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def _owner_alive(store: Store, token: str) -> bool:
    path = _lock_path(store, token)
    if not path.exists():
        return False
    try:
        with open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    path.unlink(missing_ok=True)
    return False


def reconcile_submitting(store: Store) -> Dict[str, str]:
    """Record or drop SUBMITTING attempts of dead submitters; returns tag -> job id found."""
    rows = store.submitting()
    tags: Dict[str, List] = {}
    for row in rows:
        tags.setdefault(row["token"], []).append(row)
    orphan = {t: r for t, r in tags.items() if not _owner_alive(store, t.split(":")[0])}
    if not orphan:
        return {}
    found: Dict[str, str] = {}
    for source in (slurm.squeue_by_comment, slurm.sacct_by_comment):
        missing = set(orphan) - set(found)
        if not missing:
            break
        try:
            jobs = source()
        except slurm.SlurmUnavailable:
            continue
        for info in jobs.values():
            if info.comment.startswith(COMMENT_PREFIX) and info.comment[len(COMMENT_PREFIX):] in missing:
                found.setdefault(info.comment[len(COMMENT_PREFIX):], info.job_id.split("_")[0])
    for tag, rows_of_tag in orphan.items():
        if tag in found:
            array = any(r["array_task"] is not None for r in rows_of_tag)
            store.record_job(tag, found[tag], array)
        else:
            store.drop_unsubmitted(tag)
    return found
