"""Shells inside Slurm allocations: `danlu attach` (a running run's job) and `danlu debug` (a new allocation of a
run's shape). Pure: argv and shell text out; nothing is run or written here.

The shell's setup (templates/shell.sh.j2: the job's environment as templates/env.sh.j2 renders it, the run's
variables, its workdir) travels as an argument of `bash -c`: nothing is written on the node, and no secret is in
it (env.pass_env reaches the node by name: srun passes the caller's environment).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..node_agent import HEAD_ADDR, LOG_DIR, NODE_RANK, PER_NODE_LAUNCHERS, PORT
from ..spec.file_checks import env_dir
from ..spec.options import RunSpec
from ..spec.validate import Shape
from .command import DEBUGPY_PORT
from .render import RunPlan, ShellPlan, render_shell

SHELL_NAME = "danlu-shell"  # $0 of the bash that runs the setup


def shell_command(setup: str, command: Sequence[str]) -> List[str]:
    """bash that runs the `setup` lines first: then an interactive shell (no command), whose rc file they are, or
    `command` in its place."""
    if not command:
        return ["bash", "-c", 'exec bash --rcfile <(printf "%s\\n" "$1") -i', SHELL_NAME, setup]
    return ["bash", "-c", 'eval "$1"; shift; exec "$@"', SHELL_NAME, setup, *command]


def attach_setup(row: Any, spec: RunSpec, shape: Shape, interactive: bool, template_dir: Optional[str]) -> str:
    """The setup of a shell in a running run's job (`row`: its latest attempt, Store.latest's full view)."""
    run = RunPlan(
        run_id=row["run"],
        sweep=row["sweep"],
        attempt=row["attempt"],
        run_dir=row["run_dir"],
        workdir=row["workdir"],
        command=row["command"] or "",
        code_path=frozen_code_path(row, spec),
    )
    title = f"a shell in the job of run {row['run']}"
    plan = ShellPlan(title, f"danlu attach {row['run']}", spec, shape, run, interactive, template_dir=template_dir)
    return render_shell(plan)


def frozen_code_path(row: Any, spec: RunSpec) -> str:
    """The PYTHONPATH into the run's frozen code, as its job has it ("" for a run of the live workdir)."""
    if not row["code"]:
        return ""
    from ..code.imports import python_path, site_dirs
    from ..code.store_layout import CodeLayout

    tree = CodeLayout.of_run_dir(Path(row["run_dir"])).tree(row["code"])
    return os.pathsep.join(python_path(tree, Path(row["workdir"]), site_dirs(env_dir(spec))))


# the node agent's tokens (job/node_env.node_argv) as the debug shell knows them
_IN_SHELL: Dict[str, str] = {
    NODE_RANK: '"${SLURM_NODEID:-0}"',
    HEAD_ADDR: '"$DANLU_HEAD_ADDR"',
    PORT: '"$DANLU_PORT"',
    LOG_DIR: '"$DANLU_LOG_DIR/node${SLURM_NODEID:-0}"',
    "@NODE@": '"$danlu_node"',
}
_TOKENS = re.compile("(" + "|".join(map(re.escape, _IN_SHELL)) + ")")


def shell_word(arg: str) -> str:
    """One argument as a shell word: quoted, with the tokens only the node knows as its variables."""
    return "".join(_IN_SHELL.get(p) or shlex.quote(p) for p in _TOKENS.split(arg) if p) or "''"


@dataclass(frozen=True)
class DebugShell:
    """A `danlu debug` session: the run it would be and the launch command its job would start."""

    spec: RunSpec
    shape: Shape
    run: RunPlan
    argv: List[str]  # the launch command, with the node agent's @TOKENS@
    log_dir: str  # torch elastic's per-rank files (@LOG_DIR@), per node below it
    login_host: str
    debugpy: bool = False
    port_command: str = ""
    template_dir: Optional[str] = None

    def setup(self, interactive: bool = True) -> str:
        plan = ShellPlan(
            f"danlu debug session {self.run.sweep}",
            "danlu debug",
            self.spec,
            self.shape,
            self.run,
            interactive,
            discovery=True,
            port_command=self.port_command,
            functions="\n".join(run_functions(self) + banner(self)),
            template_dir=self.template_dir,
        )
        return render_shell(plan)


def run_functions(s: DebugShell) -> List[str]:
    """danlu-run (the launch command on this node, as the node agent starts it: job/node_env.launcher_env) and
    danlu-run-all (on every node and task of the allocation, as the job's srun starts the agents)."""
    nodes, tasks = s.shape.nodes, s.shape.tasks_per_node
    ranks = ""
    if s.spec.launch.kind not in PER_NODE_LAUNCHERS:  # one program per task: the ranks are Slurm's tasks
        ranks = (
            ' RANK="${SLURM_PROCID:-0}" WORLD_SIZE="${SLURM_NTASKS:-1}" LOCAL_RANK="${SLURM_LOCALID:-0}"'
            f' LOCAL_WORLD_SIZE={tasks} GROUP_RANK="${{SLURM_NODEID:-0}}"'
        )
    return [
        "# ---- danlu-run: the run's launch command, with what the node agent sets around it ----",
        "[ -d /proc/driver/nvidia/gpus ] || [ -e /dev/kfd ] || export ACCELERATE_USE_CPU=${ACCELERATE_USE_CPU:-true}",
        f"export DANLU_LOG_DIR={shlex.quote(s.log_dir)}",
        "danlu-run() {",
        '    mkdir -p "$DANLU_LOG_DIR/node${SLURM_NODEID:-0}"',
        '    MASTER_ADDR="$DANLU_HEAD_ADDR" MASTER_PORT="$DANLU_PORT" NODE_RANK="${SLURM_NODEID:-0}" '
        f'PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER="${{PYTHONFAULTHANDLER:-1}}"{ranks} \\',
        f'        {" ".join(shell_word(a) for a in s.argv)} "$@"',
        "}",
        "danlu-run-all() {",
        f"    srun --overlap --nodes={nodes} --ntasks={nodes * tasks} --ntasks-per-node={tasks} --export=ALL \\",
        '        bash -c "$(declare -f danlu-run); danlu-run \\"\\$@\\"" danlu-run "$@"',
        "}",
    ]


def _say(lines: Sequence[str]) -> str:
    """A printf of message lines to stderr; @NODE@ in them is the node's name."""
    return "printf '%s\\n' " + " ".join(shell_word(line) for line in lines) + " >&2"


def banner(s: DebugShell) -> List[str]:
    """What the shell says first: where it is, the launch command, how to run it (and attach VS Code)."""
    lines = [
        "danlu debug: a shell on @NODE@ (node 0 of the allocation); `exit` ends the allocation",
        f"the launch command of the run (nothing recorded): {shlex.join(s.argv)}",
        "danlu-run runs it here, with the rank, head and port the job's node agent would give it",
    ]
    if s.shape.nodes * s.shape.tasks_per_node > 1:
        lines.append(
            f"danlu-run-all runs it on all {s.shape.nodes} node(s), {s.shape.tasks_per_node} task(s) each "
            "(srun --overlap), as the job would"
        )
    if s.debugpy:
        lines += vscode_lines(s.login_host, s.run.workdir)
    return ["danlu_node=${SLURMD_NODENAME:-$(hostname -s)}", _say(lines)]


def vscode_lines(login_host: str, workdir: str) -> List[str]:
    """How to connect VS Code to rank 0's debugpy on the node (@NODE@) through the login node."""
    attach = (
        '{"name": "danlu debug", "type": "debugpy", "request": "attach", '
        f'"connect": {{"host": "localhost", "port": {DEBUGPY_PORT}}}, '
        f'"pathMappings": [{{"localRoot": "${{workspaceFolder}}", "remoteRoot": "{workdir}"}}]}}'
    )
    return [
        f"--debugpy: rank 0 waits for a debugger on @NODE@:{DEBUGPY_PORT} once danlu-run starts it",
        f"  from your machine: ssh -J {login_host} -N -L {DEBUGPY_PORT}:localhost:{DEBUGPY_PORT} @NODE@",
        f"  (or a Remote-SSH host in ~/.ssh/config: Host @NODE@ / HostName @NODE@ / ProxyJump {login_host})",
        f"  VS Code launch.json configuration: {attach}",
    ]
