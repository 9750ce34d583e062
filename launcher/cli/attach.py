"""`danlu attach RUN [--node N] [-- COMMAND...]`: a shell (or COMMAND) inside a running run's Slurm job, on one of
its nodes, with the job's environment (plan/interactive.py); srun takes over the terminal."""

from __future__ import annotations

import json
import os
import shlex
import sys
from argparse import Namespace
from typing import Any, List, Optional

from ..errors import UserError
from .common import open_store, refreshed_run, store_errors


def _refuse(row: Any) -> None:
    """A local run, or a run that is not RUNNING, has no allocation to attach to."""
    from ..backends import for_record

    name = row["run"]
    if not for_record(row).in_slurm:
        raise UserError(
            f"{name} is a local run (cluster.kind=local): it runs on this machine, in no Slurm allocation",
            f"cd {shlex.quote(row['workdir'])}  (its logs: danlu logs {name})",
        )
    state = row["state"]
    if state == "RUNNING":
        return
    if state in ("PENDING", "SUBMITTING", "REQUEUED"):
        hint = f"wait until it starts: danlu status {name}"
    elif row["final"]:
        hint = f"its output: danlu logs {name}; start it again: danlu rerun {name}"
    else:
        hint = f"danlu status {name} says what Slurm knows of it"
    raise UserError(f"{name} is {state}, not RUNNING: there is no allocation to attach to", hint)


def _node(row: Any, index: int) -> str:
    """The host name of node `index` (0-based) of the run's job."""
    from ..slurm import assigned_nodes, expand_hostlist

    nodes = expand_hostlist(assigned_nodes(row["nodelist"]))
    if not nodes:
        raise UserError(f"{row['run']} has no nodes yet in Slurm's answer", f"try again: danlu status {row['run']}")
    if not 0 <= index < len(nodes):
        raise UserError(
            f"--node {index} is out of range: {row['run']} runs on {len(nodes)} node(s) ({', '.join(nodes)})",
            f"--node takes 0 to {len(nodes) - 1} (0 is the head node)",
        )
    return nodes[index]


def _template_dir(store: Any, row: Any) -> Optional[str]:
    """The --template-dir its submit rendered with, where it still is."""
    sweep = store.sweep(row["sweep"])
    sources = json.loads(sweep["sources"]) if sweep is not None and sweep["sources"] else {}
    found = sources.get("template_dir")
    return found if found and os.path.isdir(found) else None


def attach_argv(store: Any, args: Namespace, interactive_stdin: bool) -> List[str]:
    """The srun that opens the shell (or runs the command) on the run's node; refusals raise UserError."""
    from ..plan.interactive import attach_setup, shell_command
    from ..slurm import step_argv, step_job_id
    from ..spec.compose import spec_from_dict
    from ..spec.options import RunSpec
    from ..spec.validate import shape

    row = refreshed_run(store, args.run, "attach")
    _refuse(row)
    node = _node(row, args.node)
    spec = spec_from_dict(RunSpec, json.loads(row["config"]))
    command = list(args.remote)
    setup = attach_setup(row, spec, shape(spec), not command, _template_dir(store, row))
    pty = interactive_stdin and (not command or args.pty)
    return step_argv(shell_command(setup, command), job_id=step_job_id(row["job_id"]), node=node, pty=pty)


@store_errors
def run(args: Namespace) -> int:
    if args.node < 0:
        raise UserError(f"--node {args.node} is out of range", "--node takes 0 or more (0 is the head node)")
    argv = attach_argv(open_store(), args, sys.stdin.isatty())
    if args.dry_run:
        print(shlex.join(argv))
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)  # srun takes over the terminal; the shell's exit is danlu's
