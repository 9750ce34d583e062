"""Rendering: a run plan in, the exact sbatch script (or local setup) out. Pure functions.

Every value that reaches a shell goes through `shlex.quote` (the `q` filter in templates).
The per-node launch command carries tokens the node agent fills in on each node:
@NODE_RANK@, @HEAD_ADDR@, @PORT@, @LOG_DIR@.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import __version__
from .agent import HEAD_ADDR, LOG_DIR, NODE_RANK, PORT  # the tokens the node agent fills in
from .errors import UserError
from .options import RunSpec
from .validate import Shape, env_dir


@dataclass(frozen=True)
class RunPlan:
    """One run inside a job: what the array index selects."""

    run_id: str
    sweep: str
    attempt: int
    run_dir: str
    workdir: str
    command: str  # shell-quoted launch command with @TOKENS@


@dataclass(frozen=True)
class JobPlan:
    """One sbatch submission: a single run, or an array of runs of the same shape."""

    spec: RunSpec
    shape: Shape
    runs: Sequence[RunPlan]
    job_name: str
    comment: str
    output: str
    array: Optional[str]
    agent_command: str
    template_dir: Optional[str] = None
    submitit_dir: str = ""
    pickle_stem: str = ""  # <submitit_dir>/<token>-<n>: the pickles as written before sbatch
    extra: Dict[str, Any] = field(default_factory=dict)


def _arg_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(_arg_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def program_argv(spec: RunSpec, output_dir: str) -> List[str]:
    """`program program_args... --key=value ...`: true is a bare flag, false and null are left out."""
    argv = [str(spec.program)] + [str(a) for a in spec.program_args]
    args = dict(spec.args)
    if spec.output_arg and args.get(spec.output_arg) is None:
        args[spec.output_arg] = output_dir
    for key, value in args.items():
        if value is None or value is False:
            continue
        argv.append(f"--{key}" if value is True else f"--{key}={_arg_value(value)}")
    return argv


def launch_command(spec: RunSpec, shape: Shape, output_dir: str) -> List[str]:
    """What each node agent starts (accelerate/torchrun per node; the program per task otherwise)."""
    prog = program_argv(spec, output_dir)
    launch = spec.launch
    procs, nodes = shape.procs_per_node, shape.nodes
    if launch.kind == "accelerate":
        cmd = ["accelerate", "launch"]
        if procs * nodes > 1:
            cmd.append("--multi_gpu")  # also the multi-process path on CPU (gloo) when there is no GPU
        cmd += ["--num_machines", str(nodes), "--num_processes", str(procs * nodes)]
        if nodes > 1:
            cmd += ["--machine_rank", NODE_RANK, "--main_process_ip", HEAD_ADDR, "--rdzv_backend", "static"]
        cmd += ["--main_process_port", PORT]
        if procs * nodes > 1:
            cmd += ["--log_dir", LOG_DIR, "--tee", "3"]  # torch elastic: one log per rank
        if launch.mixed_precision:
            cmd += ["--mixed_precision", str(launch.mixed_precision)]
        cmd += list(launch.extra_args)
        return cmd + prog
    if launch.kind == "torchrun":
        cmd = ["torchrun", "--nnodes", str(nodes), "--node_rank", NODE_RANK, "--nproc_per_node", str(procs),
               "--rdzv_backend", "static", "--rdzv_endpoint", f"{HEAD_ADDR}:{PORT}", "--master_addr", HEAD_ADDR,
               "--master_port", PORT, "--log-dir", LOG_DIR, "--tee", "3"]
        return cmd + list(launch.extra_args) + prog
    # lightning / python: one process per srun task, the program itself
    return [launch.python] + list(launch.extra_args) + prog


def gres(shape: Shape, with_type: bool) -> str:
    if shape.gpu_type and with_type:
        return f"gpu:{shape.gpu_type}:{shape.gpus_per_node}"
    return f"gpu:{shape.gpus_per_node}"


def _environment(template_dir: Optional[str]) -> Any:
    import jinja2

    from .paths import templates_dir

    dirs = [str(Path(template_dir).expanduser())] if template_dir else []
    dirs.append(str(templates_dir()))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(dirs),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    return env


def render_script(plan: JobPlan) -> str:
    """The sbatch script of a job plan. Pure: same plan, same text (golden-file tested)."""
    import jinja2

    spec, shape = plan.spec, plan.shape
    req = spec.requeue
    venv = env_dir(spec)
    ids = [r.run_id for r in plan.runs]
    summary = ", ".join(ids) if len(ids) <= 4 else f"{ids[0]} ... {ids[-1]} ({len(ids)} runs)"
    ctx = dict(
        version=__version__, shape=shape, cluster=spec.cluster, resources=spec.resources, env=spec.env,
        venv=str(venv) if venv else "", job_name=plan.job_name, comment=plan.comment, output=plan.output,
        gres=gres(shape, spec.cluster.gres_with_type), time=spec.resources.time, array=plan.array,
        signal=f"{req.signal}@{req.grace_s}" if req.enabled else None, requeue=req.enabled,
        port=spec.launch.port, runs=plan.runs, run_ids_summary=summary, agent_command=plan.agent_command,
        submitit_dir=plan.submitit_dir, pickle_stem=plan.pickle_stem,
    )
    try:
        text = _environment(plan.template_dir).get_template("sbatch.sh.j2").render(**ctx)
        return re.sub(r"\n{3,}", "\n\n", text)
    except jinja2.TemplateError as e:
        where = f"{e.filename}:{e.lineno}" if getattr(e, "lineno", None) else "templates"
        raise UserError(f"template error in {where}: {e.message}", "fix the template (see templates/ for the originals)") from None


def local_setup(spec: RunSpec, run: RunPlan) -> List[str]:
    """Shell lines the local executor runs before the node agent: the same environment as in Slurm."""
    lines = list(spec.env.setup)
    venv = env_dir(spec)
    if spec.env.kind in ("uv", "venv") and venv:
        lines.append(f"source {shlex.quote(str(venv / 'bin' / 'activate'))}")
    elif spec.env.kind == "conda":
        lines += ['eval "$(conda shell.bash hook)"', f"conda activate {shlex.quote(str(spec.env.path or spec.env.name))}"]
    for key, value in spec.env.vars.items():
        lines.append(f"export {key}={shlex.quote(str(value))}")
    lines.append(
        "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in run_environment(run).items())
    )
    lines.append(f"cd {shlex.quote(run.workdir)}")
    return lines


def run_environment(run: RunPlan) -> Dict[str, str]:
    return {
        "DANLU_RUN_ID": run.run_id, "DANLU_SWEEP": run.sweep, "DANLU_ATTEMPT": str(run.attempt),
        "DANLU_RUN_DIR": run.run_dir, "DANLU_WORKDIR": run.workdir,
        "WANDB_RUN_GROUP": run.sweep, "WANDB_NAME": run.run_id, "DANLU_COMMAND": run.command,
    }
