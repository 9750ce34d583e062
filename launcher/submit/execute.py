"""Execute a plan: exactly the jobs the planner made, in order, each recorded as soon as Slurm accepts it.

Order of events, so that a crash anywhere leaves the store and the queue consistent:
  1. (planner) compose, validate and render every job: bad input stops there, nothing written;
  2. record runs and attempts as SUBMITTING under a fresh token, holding the token's lock (recovery.py);
  3. per job: the sweep's folders, the pickles, then the script that carries their SHA-256 written, then sbatch
     with `--comment=danlu:<token>:<n>`, then the job id recorded. A danlu killed between sbatch and its record
     leaves SUBMITTING attempts that the next command finds by their comment (recovery.reconcile_submitting);
  4. sbatch fails: the jobs not sent yet are forgotten; the failed job's attempts too when the controller clearly
     refused it, else (a timeout, a lost answer: it may be queued) they stay SUBMITTING for that same recovery.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import slurm
from ..backends import for_spec
from ..plan.planner import PlannedJob
from ..timings import phase
from ..words import counted


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
        dirty = subprocess.run(
            ["git", "-C", workdir, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def make_folders(job: PlannedJob) -> None:
    """The sweep's folders (scripts, pickles, Slurm's output). A run's own folders are made by its node agent when
    it starts (launcher/job/agent.py): a 10,000-run sweep's 20,000 folders took longer than everything else of the
    submit that touches the disk."""
    from .ownership import make_own_folder

    for d in job.sweep_layout.dirs():
        make_own_folder(d)  # mode 700, and refused if it is there already but not the researcher's alone


def execute(job: PlannedJob) -> str:
    """Submit one planned job (one sbatch call, or one local process); returns its job id."""
    with phase("folders"):
        make_folders(job)
    for run in job.runs:  # a LightningCLI run's extra --config, read by its program at every start
        extra = run.lightning_config
        if extra is not None:
            extra[0].write_text(extra[1])
            extra[0].chmod(0o600)
    return for_spec(job.spec).send(job)


def execute_all(store: Any, sweep: str, token: str, jobs: Sequence[PlannedJob]) -> Dict[str, str]:
    """Submit every planned job, recording each as soon as Slurm accepts it; run id -> job id."""
    results: Dict[str, str] = {}
    progress = len(jobs) > 3 and sys.stderr.isatty()
    sending: List[PlannedJob] = []
    try:
        for k, job in enumerate(jobs):
            if not store.sending(job.tag):
                raise TakenForDead(sweep, job.tag, None)
            sending[:] = [job]
            job_id = execute(job)
            with phase("store"):
                recorded = store.record_job(job.tag, job_id, job.is_array)
            if not recorded and store.job_of(job.tag) != job_id:  # (recovery may have found and recorded it)
                for_spec(job.spec).withdraw(job_id)
                raise TakenForDead(sweep, job.tag, job_id)
            for i, r in enumerate(job.runs):
                results[r.run_id] = f"{job_id}_{i}" if job.is_array else job_id
            if progress:
                print(f"\rsubmitted {k + 1}/{len(jobs)} jobs", end="", file=sys.stderr, flush=True)
    except TakenForDead as e:
        sending.clear()
        raise SubmitFailed(str(e), e.hint) from None
    except Exception as e:
        detail = " ".join(str(e).split())[:400]
        lost = sending and isinstance(e, slurm.SlurmUnavailable) and not slurm.sbatch_refused(str(e))
        store.drop_unsubmitted(token, keep=[sending[0].tag] if lost else [])
        if lost:
            job = sending[0]
            raise SubmitFailed(
                f"sbatch did not say whether it queued job {job.tag.split(':')[-1]} ({counted(len(job.runs), 'run')}) "
                f"after {accepted(len(results))}: {detail}",
                f"its runs stay SUBMITTING and the next danlu command (e.g. danlu status {sweep}) looks the job up by "
                f"its comment: recorded if Slurm has it, forgotten if not; jobs after it were not sent",
            ) from None
        raise SubmitFailed(
            f"submission failed after {accepted(len(results))}: {detail}",
            _hint(detail, sweep, bool(results)),
        ) from None
    finally:
        if progress:
            print(file=sys.stderr)
    return results


class TakenForDead(Exception):
    """Another danlu's crash recovery took this submit for dead (it was stopped past recovery.STALE_S) and marked
    the runs of `tag` and the ones after it UNSUBMITTED; `job_id`: the job already sent for them, withdrawn."""

    def __init__(self, sweep: str, tag: str, job_id: Optional[str]) -> None:
        sent = f": job {job_id}, sent for them meanwhile, was withdrawn" if job_id else ""
        super().__init__(
            f"this submit was stopped too long, and another danlu took it for dead and marked its runs from job "
            f"{tag.split(':')[-1]} on UNSUBMITTED{sent}"
        )
        self.hint = f"send them with: danlu rerun {sweep} --state UNSUBMITTED"


def accepted(n: int) -> str:
    return f"{counted(n, 'run')} {'was' if n == 1 else 'were'} accepted"


def _hint(detail: str, sweep: str, some_accepted: bool) -> str:
    kept = (
        f"the accepted runs stay queued under {sweep} (danlu status {sweep}); the others were not recorded"
        if some_accepted
        else "nothing was queued or recorded"
    )
    if "temporarily unavailable" in detail or "queue full" in detail:
        return (
            f"the controller's job table is full (MaxJobCount counts every array task): "
            f"wait for jobs to end, then submit again; {kept}"
        )
    return kept
