"""Crash safety of the CLI: jobs Slurm accepted but danlu never recorded are found and recorded.

Every submission holds an exclusive lock file named by its token while it runs. A SUBMITTING
attempt whose token lock is free belongs to a danlu that died: its job is looked up by the
`danlu:<token>:<n>` comment (squeue, then sacct) and recorded; if Slurm never saw it, the
attempt is dropped. Nothing is submitted twice and no accepted job stays untracked.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

from .. import slurm
from ..network_fs import host, server_now
from ..store import Store

# A lock file names its owner (`<host> <pid>`). On the owner's host its flock tells whether the submitter lives;
# another host sharing the store may not see that flock (it does not cross sshfs mounts, nor every NFS setup),
# so the owner touches the file every HEARTBEAT_S and other hosts take it for alive until it is STALE_S old.
HEARTBEAT_S = 20.0
STALE_S = 120.0


def _lock_path(store: Store, token: str) -> Path:
    return store.path.parent / "locks" / token


@contextmanager
def token_lock(store: Store, token: str) -> Iterator[None]:
    path = _lock_path(store, token)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(f"{host()} {os.getpid()}\n")
        fh.flush()
        done = threading.Event()

        def beat() -> None:
            while not done.wait(HEARTBEAT_S):
                try:
                    os.utime(path)
                except OSError:
                    return

        threading.Thread(target=beat, daemon=True).start()
        try:
            yield
        finally:
            done.set()
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
    try:
        owner = path.read_text().split()
        age = server_now(path.parent) - path.stat().st_mtime
    except OSError:
        return False
    if (not owner or owner[0] != host()) and age < STALE_S:
        # a submitter on another host, whose flock this host cannot see (or one that has not named itself yet):
        # alive while it beats
        return True
    path.unlink(missing_ok=True)
    return False


def reconcile_submitting(store: Store) -> Dict[str, str]:
    """Record or drop SUBMITTING attempts of dead submitters; returns tag -> job id found.

    A tag's job is looked up by its `danlu:<tag>` comment in squeue (-t all), then in sacct. Where
    accounting does not keep comments, a job of the expected name submitted after the attempt was
    written, that no attempt in the store has, is taken. Attempts are dropped only when both
    lookups answered and neither knows the job: a Slurm outage never makes danlu forget a job."""
    rows = store.submitting()
    tags: Dict[str, List[sqlite3.Row]] = {}
    for row in rows:
        tags.setdefault(row["token"], []).append(row)
    orphan = {t: r for t, r in tags.items() if not _owner_alive(store, t.split(":")[0])}
    if not orphan:
        return {}
    found: Dict[str, str] = {}
    unsure: Set[str] = set()  # several jobs could be it: keep the attempt, look again next time
    answered = True
    for source in (slurm.squeue_by_comment, slurm.sacct_by_comment):
        missing = set(orphan) - set(found)
        if not missing:
            break
        try:
            jobs = source()
        except slurm.SlurmUnavailable as e:
            if "not found" not in str(e):  # no Slurm on this machine at all: nothing can be in it
                answered = False
            continue
        for info in jobs.values():
            tag = slurm.tag_of(info.comment)
            if tag in missing:
                found.setdefault(tag, info.job_id.split("_")[0])
        if source is slurm.sacct_by_comment:
            by_name, unsure = _match_by_name(store, {t: orphan[t] for t in set(orphan) - set(found)}, jobs)
            found.update(by_name)
    for tag, rows_of_tag in orphan.items():
        if tag in found:
            array = any(r["array_task"] is not None for r in rows_of_tag)
            store.record_job(tag, found[tag], array)
        elif answered and tag not in unsure:
            store.drop_unsubmitted(tag)
    return found


def _match_by_name(
    store: Store, orphan: Dict[str, List[sqlite3.Row]], jobs: Dict[str, slurm.JobInfo]
) -> Tuple[Dict[str, str], Set[str]]:
    """(tag -> job id where exactly one unclaimed job fits, tags where several do)."""
    if not orphan:
        return {}, set()
    known = store.job_ids()
    by_name: Dict[str, Set[Tuple[str, float]]] = {}  # job name -> (job id, submitted)
    for info in jobs.values():
        if info.comment:  # accounting keeps comments: the comment lookup above was authoritative
            continue
        base = info.job_id.split("_")[0]
        submitted = slurm.parse_time(info.submit)
        if base not in known and submitted is not None:
            by_name.setdefault(info.name, set()).add((base, submitted))
    found: Dict[str, str] = {}
    unsure: Set[str] = set()
    taken: Set[str] = set()
    for tag, rows in orphan.items():
        since = min(r["updated"] for r in rows) - 2  # the job was submitted after its attempt was written
        name = slurm.job_name([r["run"] for r in rows], any(r["array_task"] is not None for r in rows))
        cands = {b for b, t in by_name.get(name, set()) if t >= since} - taken
        if len(cands) == 1:
            found[tag] = cands.pop()
            taken.add(found[tag])
        elif cands:  # ambiguous: never guessed, never dropped
            unsure.add(tag)
    return found, unsure
