"""Crash safety of the CLI: jobs Slurm accepted but danlu never recorded are found and recorded.

Every submission holds an exclusive lock file named by its token while it runs. A SUBMITTING
attempt whose token lock is free belongs to a danlu that died: its job is looked up by the
`danlu:<token>:<n>` comment (squeue, then sacct) and recorded; if Slurm never saw it, the
attempt becomes UNSUBMITTED (final, with a warning once and a reason in the table), never silently
forgotten. Nothing is submitted twice and no accepted job stays untracked.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

from .. import slurm
from ..backends import for_record
from ..network_fs import host, server_now
from ..procs import pid_alive
from ..store import Store
from ..words import counted

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
    if len(owner) > 1 and owner[0] == host() and owner[1].isdigit() and pid_alive(int(owner[1])):
        # a submitter of this host whose flock does not reach this process (the store reached through another
        # mount of the same network folder): its process says it lives
        return True
    path.unlink(missing_ok=True)
    return False


SETTLE_S = 10.0  # how long after its danlu ended an sbatch may still get a job queued: looked up again after this
NEVER_SENT = "never sent to Slurm: the danlu that submitted it ended before sbatch accepted it"
NEVER_STARTED = "never started: the danlu that started it here ended before recording its process"


@dataclass
class Recovered:
    """What crash recovery did: tag -> job id found; sweep -> runs it found never sent (now UNSUBMITTED); runs
    left SUBMITTING because Slurm could not be asked, with why."""

    found: Dict[str, str] = field(default_factory=dict)
    unsubmitted: Dict[str, List[str]] = field(default_factory=dict)
    undecided: List[str] = field(default_factory=list)
    why_undecided: str = ""


def reconcile_submitting(store: Store, settle_s: float = SETTLE_S) -> Recovered:
    """Record SUBMITTING attempts of dead submitters whose job Slurm has; mark the others UNSUBMITTED.

    An attempt whose sbatch never began (`submitted` unset) never reached Slurm. The others are looked up by
    their `danlu:<tag>` comment in squeue (-t all), then in sacct; where accounting does not keep comments, a job
    of the expected name submitted after the attempt was written, that no attempt in the store has, is taken.
    One not found is looked up again `settle_s` later (its sbatch may have outlived its danlu, and the controller
    may still be taking the job in) and only then marked never sent. Nothing is marked unless both lookups
    answered: a Slurm outage, or Slurm's commands missing from this shell, never makes danlu misjudge a job."""
    done = Recovered()
    orphan = _orphans(store)
    sent = {t: r for t, r in orphan.items() if any(row["submitted"] is not None for row in r)}
    for tag in set(orphan) - set(sent):
        reason = NEVER_SENT if for_record(orphan[tag][0]).in_slurm else NEVER_STARTED
        _mark(store, done, tag, orphan[tag], reason, unsent_only=True)
    in_slurm = {t: r for t, r in sent.items() if any(for_record(row).in_slurm for row in r)}
    for tag in set(sent) - set(in_slurm):  # a local process: nothing to ask
        _mark(store, done, tag, sent[tag], NEVER_STARTED)
    unsure = _look_up_settled(store, in_slurm, done, settle_s)
    _decide(store, in_slurm, done, unsure)
    return done


def _orphans(store: Store) -> Dict[str, List[sqlite3.Row]]:
    """The SUBMITTING attempts whose submitter is dead, by their tag (<token>:<n>)."""
    tokens = {row["token"].split(":")[0] for row in store.submitting()}
    dead = {t for t in tokens if not _owner_alive(store, t)}
    orphan: Dict[str, List[sqlite3.Row]] = {}
    if not dead:
        return orphan
    # read again now that their submits are known dead: a row read before may have been sent since
    for row in store.submitting():
        if row["token"].split(":")[0] in dead:
            orphan.setdefault(row["token"], []).append(row)
    return orphan


def _look_up_settled(store: Store, tags: Dict[str, List[sqlite3.Row]], done: Recovered, settle_s: float) -> Set[str]:
    """Find the jobs of `tags` in Slurm into done.found, those not found once more `settle_s` later; returns the tags
    several jobs could be."""
    unsure = _look_up(store, tags, done)
    missing = set(tags) - set(done.found) - unsure
    if missing and not done.why_undecided:
        time.sleep(settle_s)
        unsure |= _look_up(store, {t: tags[t] for t in missing}, done)
    return unsure


def _decide(store: Store, tags: Dict[str, List[sqlite3.Row]], done: Recovered, unsure: Set[str]) -> None:
    """Record the job found of each tag; without Slurm's answer leave the others undecided, else mark those that no
    job could be never sent."""
    for tag, rows_of_tag in tags.items():
        if tag in done.found:
            array = any(r["array_task"] is not None for r in rows_of_tag)
            store.record_job(tag, done.found[tag], array)
        elif done.why_undecided:
            done.undecided += [r["run"] for r in rows_of_tag]
        elif tag not in unsure:
            _mark(store, done, tag, rows_of_tag, NEVER_SENT)


def _look_up(store: Store, tags: Dict[str, List[sqlite3.Row]], done: Recovered) -> Set[str]:
    """Find the jobs of `tags` in squeue, then sacct, into done.found; returns the tags several jobs could be."""
    unsure: Set[str] = set()  # several jobs could be it: keep the attempt, look again next time
    for source in (slurm.squeue_by_comment, slurm.sacct_by_comment):
        missing = set(tags) - set(done.found)
        if not missing:
            break
        try:
            jobs = source()
        except slurm.SlurmUnavailable as e:
            done.why_undecided = done.why_undecided or str(e)
            continue
        for info in jobs.values():
            tag = slurm.tag_of(info.comment)
            if tag in missing:
                done.found.setdefault(tag, info.job_id.split("_")[0])
        if source is slurm.sacct_by_comment:
            by_name, unsure = _match_by_name(store, {t: tags[t] for t in set(tags) - set(done.found)}, jobs)
            done.found.update(by_name)
    return unsure


def _mark(
    store: Store, done: Recovered, tag: str, rows: List[sqlite3.Row], reason: str, unsent_only: bool = False
) -> None:
    runs = store.mark_unsubmitted(tag, reason, unsent_only)
    if runs:
        done.unsubmitted.setdefault(rows[0]["sweep"], []).extend(runs)


def warnings(done: Recovered) -> List[Tuple[str, str]]:
    """(warning, hint) lines for what recovery could not leave unsaid."""
    said = []
    for sweep, runs in sorted(done.unsubmitted.items()):
        said.append(
            (
                f"{counted(len(runs), 'run')} of {sweep} ({_names(runs)}) never reached Slurm: the danlu that "
                "submitted them ended first; they are UNSUBMITTED now",
                f"send them with: danlu rerun {sweep} --state UNSUBMITTED",
            )
        )
    if done.undecided:
        said.append(
            (
                f"{counted(len(done.undecided), 'run')} ({_names(done.undecided)}) stay SUBMITTING: their submit "
                f"ended, and Slurm could not be asked whether it has their job ({done.why_undecided})",
                "run danlu where Slurm's commands answer (on PATH, controller up); nothing is forgotten meanwhile",
            )
        )
    return said


def _names(runs: List[str], most: int = 3) -> str:
    shown = ", ".join(runs[:most])
    return shown + (f" and {len(runs) - most} more" if len(runs) > most else "")


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
