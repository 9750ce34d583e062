"""`danlu debug` as library calls: one run composed and checked exactly as `danlu submit` does it (the same code path,
errors and cluster facts), then the salloc of its job's shape whose shell, on the allocation's first node, has the
job's environment and the run's launch command ready (plan/interactive.py). Nothing is recorded in the store: the
session's files go under <runs_dir>/.danlu-debug/<session>/ (layout.SweepLayout.debug_session).

The shell runs the live workdir's code, not a frozen snapshot: a snapshot is written for a store row, and a debug
session has none (and the point of it is to edit and run again).
"""

from __future__ import annotations

import secrets
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from ..errors import UserError
from ..layout import SweepLayout
from .prepare import SubmitRequest, prepare_submit


@dataclass(frozen=True)
class DebugRequest:
    """What `danlu debug` was asked for."""

    submit: SubmitRequest  # the run, composed and checked as `danlu submit` would
    debugpy: bool = False
    pty: bool = True  # the caller's stdin is a terminal


@dataclass(frozen=True)
class DebugPlan:
    """The salloc to exec, what to say first, and the files to write before it (a LightningCLI run's extra config)."""

    argv: List[str]
    warnings: List[str]
    session: Any  # plan.interactive.DebugShell
    extra_config: Optional[Any] = None  # (path, text)

    def write(self) -> None:
        """The session's folder, and a LightningCLI run's extra --config file, as a submit writes them."""
        Path(self.session.run.run_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.extra_config is not None:
            path, text = self.extra_config
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_text(text)


def _refuse_local(prepared: Any) -> None:
    if prepared.local:
        raise UserError(
            "danlu debug opens a shell in a Slurm allocation, and this run's cluster is local (this machine)",
            "run it here: `danlu submit ... --dry-run` prints its command; or choose a Slurm cluster (cluster=NAME)",
        )
    if len(prepared.cfgs) != 1:
        raise UserError(
            f"danlu debug takes one run, and the overrides make {len(prepared.cfgs)}",
            "give each key one value (a sweep is for danlu submit -m)",
        )


def plan_debug(request: DebugRequest) -> DebugPlan:
    """Compose and check as submit does (bad input raises submit's UserError), then plan the session."""
    prepared = prepare_submit(request.submit)
    prepared.verdict.refuse()
    _refuse_local(prepared)
    cfg, shape = prepared.cfgs[0], prepared.verdict.shapes[0]
    shell, extra = _session(request, cfg, shape)
    from .. import slurm
    from ..plan.interactive import shell_command
    from ..plan.render import JobPlan, sbatch_options

    header = JobPlan(
        spec=cfg.spec,
        shape=shape,
        runs=(),
        job_name=shell.run.sweep,
        comment="",
        output="",
        array=None,
        agent_command="",
        port_command=shell.port_command,
        template_dir=request.submit.template_dir,
    )
    step = slurm.step_argv(shell_command(shell.setup(), []), pty=request.pty)
    argv = slurm.salloc_argv(sbatch_options(header), shell.run.sweep, step)
    return DebugPlan(argv, list(prepared.warnings), shell, extra)


def _session(request: DebugRequest, cfg: Any, shape: Any) -> Any:
    """The run the session would be (its own id and folder, the live workdir) and its launch command."""
    from ..plan.command import launch_command, program_argv, under_debugpy
    from ..plan.interactive import DebugShell
    from ..plan.planner import PlannedRun, danlu_python
    from ..plan.render import RunPlan

    spec = cfg.spec
    name = f"debug-{secrets.token_hex(3)}"
    layout = SweepLayout.debug_session(Path(spec.cluster.runs_dir).expanduser().resolve(), name).run(0)
    workdir = str(Path(spec.workdir).expanduser().resolve())
    planned = PlannedRun(f"{name}/0", name, 0, cfg, shape, layout, workdir)
    extra = planned.lightning_config
    output, config = str(layout.output_dir), str(extra[0]) if extra else None
    argv = launch_command(spec, shape, output, config)
    if request.debugpy:
        argv = under_debugpy(spec, argv, program_argv(spec, output, config))
    run = RunPlan(planned.run_id, name, 1, str(layout.root), workdir, shlex.join(argv))
    shell = DebugShell(
        spec,
        shape,
        run,
        argv,
        str(layout.attempt(1).restart(0).launcher_logs("debug")),
        socket.gethostname(),
        request.debugpy,
        f"{danlu_python()} -m launcher.job.port",
        request.submit.template_dir,
    )
    return shell, extra
