"""Execute a plan: exactly the jobs the planner made, in order, each recorded as soon as Slurm accepts it.

Order of events, so that a crash anywhere leaves the store and the queue consistent:
  1. (planner) compose, validate and render every job: bad input stops there, nothing written;
  2. record runs and attempts as SUBMITTING under a fresh token, holding the token's lock (recovery.py);
  3. per job: folders, script and pickles written, then sbatch with `--comment=danlu:<token>:<n>`, then
     the job id recorded. A danlu killed between sbatch and its record leaves SUBMITTING attempts that
     the next command finds by their comment (recovery.reconcile_submitting);
  4. sbatch fails: the jobs not sent yet are forgotten; the failed job's attempts too when the controller clearly
     refused it, else (a timeout, a lost answer: it may be queued) they stay SUBMITTING for that same recovery.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import slurm
from ..plan.planner import PlannedJob
from ..plan.render import local_setup
from ..timings import phase
from . import backend


class SubmitFailed(Exception):
    """sbatch refused a job part-way through a submit; carries a hint for the researcher."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def new_token() -> str:
    return secrets.token_hex(6)


def git_state(workdir: str) -> Tuple[Optional[str], Optional[bool]]:
    """(commit, dirty) of the checkout the program runs from; (None, None) outside git."""
    try:
        commit = subprocess.run(["git", "-C", workdir, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "-C", workdir, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20)
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def _mkdirs(dirs: Sequence[Path]) -> None:
    """Each folder in order, parents first, as Path.mkdir(parents=True, exist_ok=True) makes them; by os.mkdir while
    that works (a 10,000-run sweep makes 20,000 folders: pathlib's own steps cost as much as the system calls)."""
    for k, d in enumerate(dirs):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            if not os.path.isdir(d):
                raise
        except FileNotFoundError:
            for rest in dirs[k:]:
                rest.mkdir(parents=True, exist_ok=True, mode=0o700)
            return


def make_folders(job: PlannedJob) -> None:
    """The sweep's and every run's folders of one job."""
    for d in job.sweep_layout.dirs():
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    for r in job.runs:
        _mkdirs(r.layout.dirs())


class Folders:
    """The jobs' folders made in a thread, in job order, while the main thread pickles and submits (a 10,000-run
    sweep's 20,000 folders take as long as its pickles: the file system does both at once). `ready(k)` waits for
    job k's folders (and raises what making them raised): a job is never submitted before its folders exist."""

    def __init__(self, jobs: Sequence[PlannedJob]) -> None:
        self._jobs = list(jobs)
        self._done = [threading.Event() for _ in self._jobs]
        self._error: Optional[BaseException] = None
        self.stopped = False  # a job failed: the folders of the jobs after it are not made
        self._thread = threading.Thread(target=self._make, name="danlu-folders", daemon=True)
        self._thread.start()

    def _make(self) -> None:
        try:
            for k, job in enumerate(self._jobs):
                if self.stopped:
                    return
                make_folders(job)
                self._done[k].set()
        except BaseException as e:  # noqa: BLE001 -- handed to the main thread by ready()
            self._error = e
            for event in self._done:
                event.set()

    def ready(self, k: int) -> None:
        with phase("folders (waited for)"):
            self._done[k].wait()
        if self._error is not None:
            raise self._error


def execute(job: PlannedJob, folders_ready: Optional[Callable[[], None]] = None) -> str:
    """Submit one planned job (one sbatch call, or one local process); returns its job id. `folders_ready`: waits
    until another thread has made the job's folders (Folders); without it they are made here."""
    if folders_ready is None:
        with phase("folders"):
            make_folders(job)
    else:
        folders_ready()
    sweep = job.sweep_layout
    path = job.script_path
    first = job.runs[0]
    if job.local:
        setup = local_setup(job.spec, job.plan.runs[0])
        path.write_text("\n".join(setup) + "\n")
        path.chmod(0o600)
        job_id = backend.submit_local(sweep.submitit_folder(), setup, first.agent(),
                                      tasks=first.shape.tasks_per_node, timeout_min=first.shape.time_minutes)
        return f"local-{job_id}"
    path.write_text(job.script)
    path.chmod(0o600)
    return backend.submit_slurm(path, [r.agent() for r in job.runs],
                                [sweep.pickle(job.tag, i) for i in range(len(job.runs))], first.shape.time_minutes,
                                shared=sweep.job_pickle(job.tag) if job.is_array else None)


def execute_all(store: Any, sweep: str, token: str, jobs: Sequence[PlannedJob]) -> Dict[str, str]:
    """Submit every planned job, recording each as soon as Slurm accepts it; run id -> job id."""
    results: Dict[str, str] = {}
    progress = len(jobs) > 3 and sys.stderr.isatty()
    sending: List[PlannedJob] = []
    folders = Folders(jobs) if len(jobs) > 1 or (jobs and len(jobs[0].runs) > 100) else None
    try:
        for k, job in enumerate(jobs):
            sending[:] = [job]
            job_id = execute(job, (lambda k=k: folders.ready(k)) if folders is not None else None)
            with phase("store"):
                store.record_job(job.tag, job_id, job.is_array)
            for i, r in enumerate(job.runs):
                results[r.run_id] = f"{job_id}_{i}" if job.is_array else job_id
            if progress:
                print(f"\rsubmitted {k + 1}/{len(jobs)} jobs", end="", file=sys.stderr, flush=True)
    except Exception as e:
        if folders is not None:
            folders.stopped = True
        detail = " ".join(str(e).split())[:400]
        lost = sending and isinstance(e, slurm.SlurmUnavailable) and not slurm.sbatch_refused(str(e))
        store.drop_unsubmitted(token, keep=[sending[0].tag] if lost else [])
        if lost:
            job = sending[0]
            raise SubmitFailed(
                f"sbatch did not say whether it queued job {job.tag.split(':')[-1]} ({len(job.runs)} run(s)) after "
                f"{len(results)} run(s) were accepted: {detail}",
                f"its runs stay SUBMITTING and the next danlu command (e.g. danlu status {sweep}) looks the job up by "
                f"its comment: recorded if Slurm has it, forgotten if not; jobs after it were not sent") from None
        raise SubmitFailed(f"submission failed after {len(results)} run(s) were accepted: {detail}",
                           _hint(detail, sweep, bool(results))) from None
    finally:
        if progress:
            print(file=sys.stderr)
    return results


def _hint(detail: str, sweep: str, some_accepted: bool) -> str:
    kept = (f"the accepted runs stay queued under {sweep} (danlu status {sweep}); the others were not recorded"
            if some_accepted else "nothing was queued or recorded")
    if "temporarily unavailable" in detail or "queue full" in detail:
        return (f"the controller's job table is full (MaxJobCount counts every array task): "
                f"wait for jobs to end, then submit again; {kept}")
    return kept
