"""`danlu debug OVERRIDES... [--debugpy] [--dry-run]`: the run `danlu submit` would submit, checked the same way,
as an interactive shell in a Slurm allocation of its shape (submit/debug.py); salloc takes over the terminal and
releases the allocation when the shell exits. Nothing is recorded in the store."""

from __future__ import annotations

import os
import shlex
import sys
from argparse import Namespace

from .output import err


def run(args: Namespace) -> int:
    from ..submit.debug import DebugRequest, plan_debug
    from .submit import submit_request

    plan = plan_debug(DebugRequest(submit_request(args), debugpy=args.debugpy, pty=sys.stdin.isatty()))
    for line in plan.warnings:
        err(f"warning: {line}")
    if args.dry_run:
        print(shlex.join(plan.argv))
        err("dry run: nothing allocated, nothing recorded")
        return 0
    plan.write()
    err(f"danlu debug: asking Slurm for an allocation (session {plan.session.run.sweep}, not recorded in the store)")
    sys.stdout.flush()
    os.execvp(plan.argv[0], plan.argv)  # salloc takes over the terminal; the shell's exit ends the allocation
