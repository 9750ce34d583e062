"""`danlu submit` and the submission half of `danlu rerun`: plan, render, record, submit.

Order of events, so that a crash anywhere leaves the store and the queue consistent:
  1. compose and validate every run (bad input stops here: nothing written, nothing submitted);
  2. render every script (pure);
  3. record runs and attempts as SUBMITTING under a fresh token;
  4. sbatch each job with the token in its --comment, then record the job ids.
A danlu killed between 4's sbatch and its record leaves SUBMITTING attempts whose token
`reconcile_submitting` finds in the queue/accounting on the next command.
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .config import RunConfig
from .errors import UserError
from .options import RunSpec
from .render import JobPlan, RunPlan, launch_command, local_setup, render_script
from .validate import Shape, file_problems, shape

COMMENT_PREFIX = "danlu:"


@dataclass
class PlannedRun:
    run_id: str
    idx: int
    cfg: RunConfig
    shape: Shape
    run_dir: str
    workdir: str
    attempt: int = 1

    @property
    def spec(self) -> RunSpec:
        return self.cfg.spec


@dataclass
class PlannedJob:
    runs: List[PlannedRun]
    plan: JobPlan
    script: str = ""

    @property
    def spec(self) -> RunSpec:
        return self.runs[0].spec


@dataclass
class Submission:
    sweep: str
    token: str
    jobs: List[PlannedJob] = field(default_factory=list)


def sweep_dir(spec: RunSpec, sweep: str) -> Path:
    return Path(spec.cluster.runs_dir).expanduser().resolve() / sweep


def check(cfgs: Sequence[RunConfig], strict_files: bool) -> Tuple[List[Shape], List[UserError]]:
    """Validate every run; file problems are errors unless `strict_files` is False (dry-run)."""
    shapes = [shape(c.spec) for c in cfgs]
    warnings: List[UserError] = []
    seen = set()
    for c in cfgs:
        for p in file_problems(c.spec):
            if strict_files:
                raise p
            if p.message not in seen:
                seen.add(p.message)
                warnings.append(p)
    return shapes, warnings


def _group_key(p: PlannedRun) -> tuple:
    s = p.spec
    env = (s.env.kind, s.env.name, s.env.path, tuple(sorted(s.env.vars.items())), tuple(s.env.setup), tuple(s.env.pass_env))
    return (s.cluster.name, p.shape.key(), env, s.launch.kind, s.launch.port, s.requeue.enabled, s.requeue.signal,
            s.requeue.grace_s, s.requeue.max_requeues, s.resources.exclude, s.resources.constraint,
            tuple(s.resources.extra_sbatch), s.sweep.max_parallel, s.cluster.account, s.cluster.qos)


def plan_jobs(sweep: str, token: str, runs: Sequence[PlannedRun], template_dir: Optional[str] = None) -> List[PlannedJob]:
    """Runs of the same shape and environment share a job array; arrays respect MaxArraySize."""
    groups: Dict[tuple, List[PlannedRun]] = {}
    for r in runs:
        groups.setdefault(_group_key(r), []).append(r)
    jobs: List[PlannedJob] = []
    for members in groups.values():
        spec = members[0].spec
        size = max(1, spec.cluster.max_array_size)
        local = spec.cluster.kind == "local"
        chunks = [[m] for m in members] if local else [members[i:i + size] for i in range(0, len(members), size)]
        for chunk in chunks:
            jobs.append(_job(sweep, token, len(jobs), chunk, template_dir))
    return jobs


def _job(sweep: str, token: str, number: int, chunk: List[PlannedRun], template_dir: Optional[str]) -> PlannedJob:
    spec = chunk[0].spec
    sdir = Path(chunk[0].run_dir).parent
    n = len(chunk)
    array = None
    if n > 1:
        parallel = spec.sweep.max_parallel
        array = f"0-{n - 1}" + (f"%{parallel}" if parallel else "")
    runs = [RunPlan(run_id=r.run_id, sweep=sweep, attempt=r.attempt, run_dir=r.run_dir, workdir=r.workdir,
                    command=shlex.join(launch_command(r.spec, r.shape, str(Path(r.run_dir) / "output"))))
            for r in chunk]
    name = chunk[0].run_id if n == 1 else sweep
    output = str(sdir / ".slurm" / ("job-%A_%a.out" if n > 1 else "job-%j.out"))
    plan = JobPlan(spec=spec, shape=chunk[0].shape, runs=runs, job_name=name,
                   comment=f"{COMMENT_PREFIX}{token}:{number}", output=output, array=array,
                   agent_command=f"{shlex.quote(sys.executable)} -u -m launcher.jobside "
                                 f"{shlex.quote(str(sdir / '.submitit' / '%j'))}",
                   template_dir=template_dir, submitit_dir=str(sdir / ".submitit"),
                   pickle_stem=str(sdir / ".submitit" / f"{token}-{number}"))
    return PlannedJob(runs=list(chunk), plan=plan, script=render_script(plan))


def git_state(workdir: str) -> Tuple[Optional[str], Optional[bool]]:
    try:
        commit = subprocess.run(["git", "-C", workdir, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "-C", workdir, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20)
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def new_token() -> str:
    return secrets.token_hex(6)


def _agent(r: PlannedRun) -> Any:
    from .agent import NodeAgent

    s = r.spec
    return NodeAgent(run_id=r.run_id, launch_kind=s.launch.kind, procs_per_node=r.shape.procs_per_node,
                     tasks_per_node=r.shape.tasks_per_node, max_requeues=s.requeue.max_requeues,
                     requeue_signal=s.requeue.signal, checkpoint_wait_s=max(5.0, s.requeue.grace_s - 5.0),
                     grace_s=float(s.requeue.grace_s) if s.requeue.enabled else 0.0)


def script_path(job: PlannedJob) -> Path:
    sdir = Path(job.runs[0].run_dir).parent
    return sdir / "scripts" / (job.plan.comment[len(COMMENT_PREFIX):].replace(":", "-") + ".sbatch")


def job_tag(job: PlannedJob) -> str:
    return job.plan.comment[len(COMMENT_PREFIX):]


def execute(job: PlannedJob) -> str:
    """Submit one planned job (one sbatch call, or one local process); returns its job id."""
    from . import backend

    sdir = Path(job.runs[0].run_dir).parent
    for d in (sdir, sdir / ".slurm", sdir / ".submitit", sdir / "scripts"):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    for r in job.runs:
        Path(r.run_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        (Path(r.run_dir) / "output").mkdir(exist_ok=True, mode=0o700)
    path = script_path(job)
    spec = job.spec
    if spec.cluster.kind == "local":
        r, run = job.runs[0], job.plan.runs[0]
        path.write_text("\n".join(local_setup(spec, run)) + "\n")
        path.chmod(0o600)
        job_id = backend.submit_local(sdir / ".submitit" / "%j", local_setup(spec, run), _agent(r),
                                      tasks=r.shape.tasks_per_node, timeout_min=r.shape.time_minutes)
        return f"local-{job_id}"
    return backend.submit_slurm(sdir / ".submitit" / "%j", lambda _command: job.script, path,
                                [_agent(r) for r in job.runs], pickle_stem=job.plan.pickle_stem)


def store_rows(jobs: Sequence[PlannedJob], git: bool = True) -> List[Any]:
    """The store rows (NewRun) of planned jobs: each run with its job's tag, script and array index."""
    from .store import NewRun

    cache: Dict[str, Tuple[Optional[str], Optional[bool]]] = {}
    rows = []
    for job in jobs:
        tag, path, array = job_tag(job), str(script_path(job)), len(job.runs) > 1
        for i, (r, rp) in enumerate(zip(job.runs, job.plan.runs)):
            if git and r.workdir not in cache:
                cache[r.workdir] = git_state(r.workdir)
            commit, dirty = cache.get(r.workdir, (None, None))
            rows.append(NewRun(run=r.run_id, idx=r.idx, overrides=r.cfg.overrides, config=r.cfg.resolved,
                               run_dir=r.run_dir, workdir=r.workdir, git_commit=commit, git_dirty=dirty,
                               partition=r.shape.partition, nodes=r.shape.nodes, cluster_kind=r.spec.cluster.kind,
                               script=path, command=rp.command, tag=tag, array_task=i if array else None))
    return rows
