"""`danlu cluster`: partitions with their GPUs total / allocated / free / down, pending jobs and your GPUs."""

from __future__ import annotations

import json
import os
import sys
from argparse import Namespace
from typing import Callable, TypeVar

from ..errors import UserError
from ..words import counted

T = TypeVar("T")


def _from_slurm(read: Callable[[], T], command: str) -> T:
    """What `read` gets from Slurm; no Slurm on this machine is bad input (exit 2 with a hint)."""
    from .. import slurm

    try:
        return read()
    except slurm.SlurmUnavailable as e:
        if "not found" in str(e):
            raise UserError(f"no Slurm here: {e}", f"run `{command}` on a login node of your Slurm cluster") from None
        raise


def init(args: Namespace) -> int:
    """`danlu cluster init NAME`: the cluster profile from the live cluster, written where the configs are found."""
    from pathlib import Path

    from .. import cluster_facts
    from ..layout import safe_name
    from ..paths import user_config_dir
    from .output import err

    if not safe_name(args.name):
        raise UserError(f"bad cluster name {args.name!r}", "use letters, digits, '.', '_' and '-' (at most 64)")
    path = (Path.cwd() / "jobs" if args.here else user_config_dir() / "jobs") / "cluster" / f"{args.name}.yaml"
    if path.exists() and not args.force and not args.dry_run:
        raise UserError(
            f"a cluster profile {str(path)!r} exists already",
            "pass --force to write it again from the cluster, or choose another NAME",
        )
    facts = _from_slurm(cluster_facts.read, "danlu cluster init")
    if not facts.partitions:
        raise UserError("the cluster shows no partitions to this user", "check `sinfo` on this login node")
    text = cluster_facts.profile_yaml(args.name, facts)
    if args.dry_run:
        print(text, end="")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)  # whole or not at all
    print(path)
    err(
        f"wrote the profile of {args.name} ({counted(len(facts.partitions), 'partition')}, Slurm {facts.version}); "
        f"use it with: danlu submit cluster={args.name} ..."
    )
    default = path.parent.parent / "local" / "default.yaml"
    err(f"make it your default: {default} with these lines (the first one is needed)")
    err(f"  # @package _global_\n  defaults:\n    - override /cluster: {args.name}")
    return 0


def run(args: Namespace) -> int:
    from ..views import cluster

    if getattr(args, "cluster_command", None) == "init":
        return init(args)

    data = _from_slurm(cluster.collect, "danlu cluster")
    if args.json:
        print(json.dumps(data, indent=1))
    elif sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        cluster.render_rich(data)
    else:
        print(cluster.render_plain(data))
    return 0
