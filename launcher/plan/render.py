"""Rendering: a job plan in, the exact sbatch script (or a local run's setup lines) out. Pure functions.

Every value that reaches a shell goes through `shlex.quote` (the `q` filter in templates). Templates are
templates/*.j2 (or the user's copies in --template-dir); the context they see is built in `_context`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from .. import __version__
from ..errors import UserError
from ..layout import RunLayout
from ..node_agent import CODE_PATH_VAR, JOB_PROTOCOL, SHA256_PLACEHOLDER, SHA256_VAR
from ..spec.file_checks import env_dir
from ..spec.options import RunSpec
from ..spec.validate import Shape

if TYPE_CHECKING:
    import jinja2  # imported where used: the status path never renders


@dataclass(frozen=True)
class RunPlan:
    """One run inside a job: what the array index selects."""

    run_id: str
    sweep: str
    attempt: int
    run_dir: str
    workdir: str
    command: str  # shell-quoted launch command with @TOKENS@
    code_path: str = ""  # PYTHONPATH entries into the run's frozen code, os.pathsep-joined ("": none)

    @property
    def env(self) -> Dict[str, str]:
        """The variables that tell the job (and the program) which run it is."""
        return run_environment(self)


@dataclass(frozen=True)
class JobPlan:
    """One sbatch submission: a single run, or an array of runs that render the same job."""

    spec: RunSpec
    shape: Shape
    runs: Sequence[RunPlan]
    job_name: str
    comment: str
    output: str  # sbatch --output (launcher/layout.py)
    array: Optional[str]
    agent_command: str  # what srun starts on every node/task (python -m launcher.job ...)
    port_command: str  # prints the job's rendezvous port on the head node (python -m launcher.job.port)
    notify_command: str = ""  # sends a failed run's message (python -m launcher.job.notify), '' when not asked
    template_dir: Optional[str] = None
    submitit_dir: str = ""
    pickle_stem: str = ""  # <stem>.<array task>.pkl: the pickled node agents, written before sbatch
    agent_per_task: bool = False  # each array task has a pickle of its own: its hash in its `case` arm


def gres(shape: Shape, with_type: bool) -> str:
    if shape.gpu_type and with_type:
        return f"gpu:{shape.gpu_type}:{shape.gpus_per_node}"
    return f"gpu:{shape.gpus_per_node}"


@lru_cache(maxsize=16)
def _environment(template_dir: Optional[str]) -> jinja2.Environment:
    """The Jinja environment (templates compiled once per process and template dir)."""
    import jinja2

    from ..paths import templates_dir

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


def _context(plan: JobPlan) -> Dict[str, Any]:
    spec, shape = plan.spec, plan.shape
    req = spec.requeue
    venv = env_dir(spec)
    ids = [r.run_id for r in plan.runs]
    summary = ", ".join(ids) if len(ids) <= 4 else f"{ids[0]} ... {ids[-1]} ({len(ids)} runs)"
    runs_said = f"{'run' if len(ids) == 1 else 'runs'} {summary}"  # the header's "run a/0" or "runs a/0, a/1"
    return dict(
        version=__version__,
        shape=shape,
        cluster=spec.cluster,
        resources=spec.resources,
        env=spec.env,
        venv=str(venv) if venv else "",
        job_name=plan.job_name,
        comment=plan.comment,
        output=plan.output,
        gres=gres(shape, spec.cluster.gres_with_type),
        time=spec.resources.time,
        array=plan.array,
        signal=f"{req.signal}@{req.grace_s}" if req.enabled else None,
        requeue=req.enabled,
        port=spec.launch.port,
        port_command=plan.port_command,
        runs=plan.runs,
        run_ids_summary=summary,
        runs_said=runs_said,
        agent_command=plan.agent_command,
        submitit_dir=plan.submitit_dir,
        pickle_stem=plan.pickle_stem,
        job_protocol=JOB_PROTOCOL,
        agent_sha256=SHA256_PLACEHOLDER,
        agent_per_task=plan.agent_per_task,
        notify_command=plan.notify_command,
        mail_user=spec.notify.email,
    )


def render_script(plan: JobPlan) -> str:
    """The sbatch script of a job plan. Pure: same plan, same text (golden-file tested)."""
    import jinja2

    try:
        text = _environment(plan.template_dir).get_template("sbatch.sh.j2").render(**_context(plan))
    except jinja2.TemplateError as e:
        where = f"{e.filename}:{e.lineno}" if isinstance(e, jinja2.TemplateSyntaxError) and e.lineno else "templates"
        raise UserError(
            f"template error in {where}: {e.message}", "fix the template (see templates/ for the originals)"
        ) from None
    if plan.runs:
        _check_job_side_variables(text, len(plan.runs) if plan.agent_per_task else 1)
    return re.sub(r"\n{3,}", "\n\n", text)


_HASH_SLOT = f"{SHA256_VAR}={SHA256_PLACEHOLDER}"  # where a pickled agent's SHA-256 goes once it is written


def _check_job_side_variables(text: str, hashes: int) -> None:
    """The job side refuses to run without its protocol and its agent's hash: a template must export them."""
    found = text.count(_HASH_SLOT)
    if found != hashes or f"DANLU_JOB_PROTOCOL={JOB_PROTOCOL}" not in text:
        raise UserError(
            f"the job script exports {SHA256_VAR} {found} times, not {hashes}, or no DANLU_JOB_PROTOCOL: "
            f"the job side would refuse to run",
            "copy the lines that export them from danlu's own templates/launch.sh.j2 and templates/runs.sh.j2",
        )


def with_agent_hashes(script: str, hashes: Sequence[str]) -> str:
    """The script with the pickled agents' SHA-256 in place of its placeholders, in array task order (one hash
    when every task shares one pickle)."""
    parts = script.split(_HASH_SLOT)
    if len(parts) != len(hashes) + 1:
        raise ValueError(f"the script has {len(parts) - 1} places for {len(hashes)} agent hashes")
    out = [parts[0]]
    for digest, part in zip(hashes, parts[1:], strict=True):
        out += [f"{SHA256_VAR}={digest}", part]
    return "".join(out)


def local_setup(spec: RunSpec, run: RunPlan) -> List[str]:
    """Shell lines the local executor runs before the node agent: the same environment as in Slurm."""
    lines = list(spec.env.setup)
    venv = env_dir(spec)
    if spec.env.kind in ("uv", "venv") and venv:
        lines.append(f". {shlex.quote(str(venv / 'bin' / 'activate'))}")  # run by /bin/sh, which has no `source`
    elif spec.env.kind == "conda":
        lines += [
            'eval "$(conda shell.bash hook)"',
            f"conda activate {shlex.quote(str(spec.env.path or spec.env.name))}",
        ]
    for key, value in spec.env.vars.items():
        lines.append(f"export {key}={shlex.quote(str(value))}")
    lines.append("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in run.env.items()))
    lines.append(f"cd {shlex.quote(run.workdir)}")
    return lines


def run_environment(run: RunPlan) -> Dict[str, str]:
    return {
        "DANLU_RUN_ID": run.run_id,
        "DANLU_SWEEP": run.sweep,
        "DANLU_ATTEMPT": str(run.attempt),
        "DANLU_RUN_DIR": run.run_dir,
        "DANLU_WORKDIR": run.workdir,
        "DANLU_STEP_MARK": str(RunLayout(Path(run.run_dir)).attempt(run.attempt).step_started),
        "WANDB_RUN_GROUP": run.sweep,
        "WANDB_NAME": run.run_id,
        "DANLU_COMMAND": run.command,
        **({CODE_PATH_VAR: run.code_path} if run.code_path else {}),
    }


@dataclass(frozen=True)
class NotifyPlan:
    """The sweep's summary job (notify.*): it waits for the jobs with `afterany` and runs `danlu notify`."""

    spec: RunSpec  # the sweep's first run: notify, cluster (account, qos)
    sweep: str
    partition: Optional[str]
    job_ids: Sequence[str]  # Slurm job ids (an array's own id stands for all its tasks)
    output: str  # sbatch --output (launcher/layout.py)
    command: str  # python -m launcher.cli notify SWEEP


def render_notify_script(plan: NotifyPlan) -> str:
    """The summary job's batch script. Pure: same plan, same text (golden-file tested)."""
    ids = sorted(dict.fromkeys(plan.job_ids), key=lambda j: (len(j), j))
    n = plan.spec.notify
    return (
        _environment(None)
        .get_template("notify.sh.j2")
        .render(
            version=__version__,
            sweep=plan.sweep,
            job_name=f"{plan.sweep}-notify",
            comment=f"danlu-notify:{plan.sweep}",
            partition=plan.partition,
            time=n.summary_time,
            output=plan.output,
            dependency="afterany:" + ":".join(ids),
            cluster=plan.spec.cluster,
            mail_user=n.email,
            url_ref=n.url,
            command=plan.command,
        )
    )


def sbatch_options(plan: JobPlan) -> List[str]:
    """The options of the job script's `#SBATCH` lines (templates/header.sh.j2): what an interactive allocation of
    the same shape asks for (slurm.salloc_argv)."""
    header = _environment(plan.template_dir).get_template("header.sh.j2").render(**_context(plan))
    return [w for line in header.splitlines() if line.startswith("#SBATCH ") for w in shlex.split(line[8:])]


@dataclass(frozen=True)
class ShellPlan:
    """What a shell inside a run's allocation sets up (templates/shell.sh.j2): the job's environment, the run's
    variables, its workdir; `discovery`: head node and port as the job script finds them; `functions`: shell code
    after it (danlu debug's danlu-run)."""

    title: str
    prompt: str  # what the interactive shell's prompt starts with: (danlu RUN) node1:~$
    spec: RunSpec
    shape: Shape
    run: RunPlan
    interactive: bool
    discovery: bool = False
    port_command: str = ""
    functions: str = ""
    template_dir: Optional[str] = None


def render_shell(plan: ShellPlan) -> str:
    """The shell lines of a ShellPlan. Pure: no secret is in them (env.pass_env is passed by name by srun)."""
    venv = env_dir(plan.spec)
    text = (
        _environment(plan.template_dir)
        .get_template("shell.sh.j2")
        .render(
            version=__version__,
            title=plan.title,
            prompt=plan.prompt,
            interactive=plan.interactive,
            env=plan.spec.env,
            venv=str(venv) if venv else "",
            discovery=plan.discovery,
            shape=plan.shape,
            port=plan.spec.launch.port,
            port_command=plan.port_command,
            run_env=plan.run.env,
            workdir=plan.run.workdir,
            functions=plan.functions,
        )
    )
    return re.sub(r"\n{3,}", "\n\n", text)
