"""The planner: run configs in, jobs out. It writes nothing and runs nothing; the only files it reads are a
LightningCLI program's own --config files, which a run's extra config extends (spec/lightning.py).

What runs (the program, its arguments, launcher, agent settings: per run, in the array's `case` block and
the pickled agent) is kept apart from where and how the job runs (partition, GPUs, time, environment,
requeue: the rest of the script). Runs share a job array exactly when the rest of their script is the
same text: each run's job is rendered once without its runs (memoized on the template's inputs) and
runs are grouped by that text, so any option that changes the job's header or shape splits the array
and any that does not, does not.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .. import slurm
from ..backends import for_spec
from ..backends.submitit_jobs import shared_agent
from ..code.job_side import boot_command
from ..code.run_code import NO_CODE, RunCode
from ..layout import RunLayout, SweepLayout
from ..node_agent import NodeAgent
from ..spec.compose import RunConfig
from ..spec.lightning import lost_progress_note
from ..spec.options import RunSpec
from ..spec.validate import Shape
from ..store import NewRun, output_dir_of
from .command import launch_command
from .render import JobPlan, RunPlan, local_setup, render_script, with_agent_hashes

GitState = Tuple[Optional[str], Optional[bool]]


@dataclass(frozen=True)
class PlannedRun:
    """One run to start: which config, under which id, in which run directory, as which attempt."""

    run_id: str
    sweep: str
    idx: int
    cfg: RunConfig
    shape: Shape
    layout: RunLayout
    workdir: str
    attempt: int = 1
    stop_grace_s: Optional[float] = None  # the cluster's SIGTERM-to-SIGKILL time for this run (slurm.stop_grace)
    code: RunCode = NO_CODE  # the frozen code it runs (launcher/code/)

    @property
    def spec(self) -> RunSpec:
        return self.cfg.spec

    @cached_property
    def lightning_config(self) -> Optional[Tuple[Path, str]]:
        """A LightningCLI run's extra `--config` (spec/lightning.extra_config): its path and text; None for others."""
        from ..spec.lightning import extra_config, extra_config_text, keeps_progress

        if not keeps_progress(self.spec):
            return None
        text = extra_config_text(
            extra_config(self.spec, self.workdir, str(self.layout.output_dir), str(self.layout.stop_checkpoint))
        )
        return self.layout.lightning_config(self.attempt), text

    @property
    def command(self) -> str:
        extra = self.lightning_config
        return shlex.join(
            launch_command(
                self.spec, self.shape, str(self.layout.output_dir), str(extra[0]) if extra else None, self.code
            )
        )

    def agent(self) -> NodeAgent:
        """The callable every node (or task) of this run's job runs, pickled by submitit."""
        s = self.spec
        return NodeAgent(
            run_id=self.run_id,
            launch_kind=s.launch.kind,
            procs_per_node=self.shape.procs_per_node,
            tasks_per_node=self.shape.tasks_per_node,
            max_requeues=s.requeue.max_requeues,
            requeue_signal=s.requeue.signal,
            checkpoint_wait_s=max(5.0, s.requeue.grace_s - 5.0),
            grace_s=float(s.requeue.grace_s) if s.requeue.enabled else 0.0,
            hang_timeout_s=float(s.launch.hang_timeout_s or 0),
            hang_stacks=s.launch.hang_stacks,
            stop_grace_s=float(self.stop_grace_s) if self.stop_grace_s else NodeAgent.stop_grace_s,
            keep_progress=self.lightning_config is not None,
            progress_lost=bool(lost_progress_note(s)),
        )


@dataclass(frozen=True)
class PlannedJob:
    """One sbatch call (or one local process): its runs, in array-index order, and its script."""

    tag: str  # <token>:<n>, the job's --comment after the prefix
    runs: Tuple[PlannedRun, ...]
    plan: JobPlan
    script: str

    @property
    def spec(self) -> RunSpec:
        return self.runs[0].spec

    def script_with_hashes(self, hashes: Sequence[str]) -> str:
        """The script with each pickled agent's SHA-256 in its placeholder's place."""
        return with_agent_hashes(self.script, hashes)

    @property
    def local_setup(self) -> List[str]:
        """The shell lines the local executor runs before the node agent: the same environment as in Slurm."""
        return local_setup(self.spec, self.plan.runs[0])

    @property
    def sweep_layout(self) -> SweepLayout:
        return self.runs[0].layout.sweep

    @property
    def script_path(self) -> Path:
        return self.sweep_layout.script(self.tag)

    @property
    def is_array(self) -> bool:
        return self.plan.array is not None

    @property
    def local(self) -> bool:
        return not for_spec(self.spec).in_slurm


def sweep_layout(spec: RunSpec, sweep: str) -> SweepLayout:
    return SweepLayout(Path(spec.cluster.runs_dir).expanduser().resolve() / sweep)


def place(spec: RunSpec, shape: Shape) -> Tuple[Optional[str], Optional[str]]:
    """(partition, qos): what the cluster's stop grace depends on (cluster_facts.stop_graces)."""
    return shape.partition, spec.cluster.qos


def new_runs(
    sweep: str,
    cfgs: Sequence[RunConfig],
    shapes: Sequence[Shape],
    graces: Optional[Dict[Tuple[Optional[str], Optional[str]], Optional[int]]] = None,
    codes: Optional[Dict[Tuple[str, str], RunCode]] = None,
) -> List[PlannedRun]:
    """The runs of a new sweep: <sweep>/<index>, first attempts. `graces`: cluster_facts.stop_graces of their places.
    `codes`: (runs_dir, workdir) -> the frozen code of the runs there (submit/freeze.py)."""
    out = []
    sweeps: Dict[str, SweepLayout] = {}  # runs_dir -> layout; workdir as written -> resolved: once, not per run
    workdirs: Dict[str, str] = {}
    for i, (cfg, shp) in enumerate(zip(cfgs, shapes, strict=True)):
        spec = cfg.spec
        layout = sweeps.get(spec.cluster.runs_dir)
        if layout is None:
            layout = sweeps[spec.cluster.runs_dir] = sweep_layout(spec, sweep)
        workdir = workdirs.get(spec.workdir)
        if workdir is None:
            workdir = workdirs[spec.workdir] = str(Path(spec.workdir).expanduser().resolve())
        out.append(
            PlannedRun(
                run_id=f"{sweep}/{i}",
                sweep=sweep,
                idx=i,
                cfg=cfg,
                shape=shp,
                layout=layout.run(i),
                workdir=workdir,
                stop_grace_s=(graces or {}).get(place(spec, shp)),
                code=(codes or {}).get((str(layout.root.parent), workdir), NO_CODE),
            )
        )
    return out


def danlu_python() -> str:
    """danlu's own interpreter as a job script starts it, from the user's workdir.

    `-I` (isolated mode) keeps the current directory and PYTHONPATH out of its module search.
    A `launcher.py` or `launcher/` of the user's thus never replaces danlu's `launcher`.
    danlu itself is found where it is installed: the interpreter's site-packages and their .pth files.
    `-I` also ignores the other PYTHON* variables and the user's site-packages, for this interpreter only.
    The environment itself is unchanged: the program the node agent starts gets the job's PYTHONPATH.
    Python 3.10 has no `-P`: `-I` is the flag that drops the current directory on every supported version.
    """
    return f"{shlex.quote(sys.executable)} -I"


def _job_side(module: str, code: RunCode, unbuffered: bool = False) -> str:
    """How a job script starts a module of danlu's job side: from the copy frozen at submit, when there is one."""
    python = danlu_python() + (" -u" if unbuffered else "")
    if code.danlu_tree is None:
        return f"{python} -m {module}"
    return boot_command(python, Path(code.danlu_tree), module)


def _agent_command(sweep: SweepLayout, tag: str, code: RunCode) -> str:
    return (
        f"{_job_side('launcher.job', code, unbuffered=True)} {shlex.quote(str(sweep.submitit_folder()))} "
        f"{shlex.quote(str(sweep.pickle_stem(tag)))}"
    )


def _notify_command(spec: RunSpec, code: RunCode) -> str:
    """What the batch script runs when the step failed (notify.url with notify.on_failure), else ''."""
    n = spec.notify
    if not (n.url and n.on_failure):
        return ""
    return f"{_job_side('launcher.job.notify', code)} {shlex.quote(n.url)} {shlex.quote(n.format)}"


def _job_plan(runs: Sequence[PlannedRun], tag: str, array: Optional[str], template_dir: Optional[str]) -> JobPlan:
    first = runs[0]
    sweep = first.layout.sweep
    name = slurm.job_name([r.run_id for r in runs], array is not None)
    return JobPlan(
        spec=first.spec,
        shape=first.shape,
        runs=tuple(
            RunPlan(
                run_id=r.run_id,
                sweep=r.sweep,
                attempt=r.attempt,
                run_dir=str(r.layout.root),
                workdir=r.workdir,
                command=r.command,
                code_path=os.pathsep.join(r.code.python_path),
            )
            for r in runs
        ),
        job_name=name,
        comment=slurm.job_comment(tag),
        output=str(sweep.slurm_output_pattern(array is not None)),
        array=array,
        agent_command=_agent_command(sweep, tag, first.code),
        port_command=_job_side("launcher.job.port", first.code),
        notify_command=_notify_command(first.spec, first.code),
        template_dir=template_dir,
        submitit_dir=str(sweep.submitit_dir),
        pickle_stem=str(sweep.pickle_stem(tag)),
        agent_per_task=array is not None and shared_agent([r.agent() for r in runs]) is None,
    )


def _job_text_key(run: PlannedRun, template_dir: Optional[str], memo: Dict[str, str]) -> str:
    """The run's job script without its runs, as it would go out in an array: equal texts share an array."""
    spec, sweep = run.spec, run.layout.sweep
    parallel = spec.sweep.max_parallel
    # the template sees nothing of the run but these (render._context): render once per distinct value
    inputs = repr(
        (
            spec.cluster,
            spec.resources,
            spec.env,
            spec.requeue,
            spec.launch.port,
            spec.notify,
            parallel,
            run.shape,
            str(sweep.root),
            template_dir,
            run.code.danlu_tree,
        )
    )
    if inputs not in memo:
        plan = JobPlan(
            spec=spec,
            shape=run.shape,
            runs=(),
            job_name="@NAME@",
            comment="@COMMENT@",
            output=str(sweep.slurm_output_pattern(True)),
            array="@ARRAY@" + (f"%{parallel}" if parallel else ""),
            agent_command=_agent_command(sweep, "@TAG@", run.code),
            port_command=_job_side("launcher.job.port", run.code),
            notify_command=_notify_command(spec, run.code),
            template_dir=template_dir,
            submitit_dir=str(sweep.submitit_dir),
            pickle_stem=str(sweep.pickle_stem("@TAG@")),
        )
        memo[inputs] = render_script(plan)
    return memo[inputs]


def plan_jobs(token: str, runs: Sequence[PlannedRun], template_dir: Optional[str] = None) -> List[PlannedJob]:
    """Group runs into jobs (arrays where their job text agrees, split at the cluster's max_array_size)
    and render each job's script. Local runs are one job each."""
    memo: Dict[str, str] = {}
    groups: Dict[str, List[PlannedRun]] = {}
    for i, r in enumerate(runs):
        # arrays are Slurm's: elsewhere every run is a job of its own
        key = _job_text_key(r, template_dir, memo) if for_spec(r.spec).in_slurm else f"alone-{i}"
        groups.setdefault(key, []).append(r)
    jobs: List[PlannedJob] = []
    for members in groups.values():
        size = max(1, members[0].spec.cluster.max_array_size)
        for start in range(0, len(members), size):
            chunk = tuple(members[start : start + size])
            tag = f"{token}:{len(jobs)}"
            array = None
            if len(chunk) > 1:
                parallel = chunk[0].spec.sweep.max_parallel
                array = f"0-{len(chunk) - 1}" + (f"%{parallel}" if parallel else "")
            plan = _job_plan(chunk, tag, array, template_dir)
            jobs.append(PlannedJob(tag=tag, runs=chunk, plan=plan, script=render_script(plan)))
    return jobs


def store_rows(jobs: Sequence[PlannedJob], git_state: Optional[Callable[[str], GitState]] = None) -> List[NewRun]:
    """The store rows of planned jobs: each run with its job's tag, script and array index. `git_state`
    (workdir -> commit, dirty) is asked once per workdir; without it the rows carry no git state."""
    cache: Dict[str, GitState] = {}
    rows = []
    for job in jobs:
        for i, (r, rp) in enumerate(zip(job.runs, job.plan.runs, strict=True)):
            if git_state is not None and r.code.key is None and r.workdir not in cache:
                cache[r.workdir] = git_state(r.workdir)
            commit, dirty = cache.get(r.workdir, (None, None))
            if r.code.key is not None:
                commit, dirty = r.code.commit, r.code.dirty
            rows.append(
                NewRun(
                    run=r.run_id,
                    idx=r.idx,
                    overrides=r.cfg.overrides,
                    config=r.cfg.resolved,
                    run_dir=str(r.layout.root),
                    workdir=r.workdir,
                    git_commit=commit,
                    git_dirty=dirty,
                    partition=r.shape.partition,
                    nodes=r.shape.nodes,
                    cluster_kind=r.spec.cluster.kind,
                    script=str(job.script_path),
                    command=rp.command,
                    tag=job.tag,
                    array_task=i if job.is_array else None,
                    output_dir=output_dir_of(r.cfg.resolved, r.workdir, str(r.layout.root)),
                    code=r.code.key,
                    job_code=r.code.danlu_key,
                )
            )
    return rows
