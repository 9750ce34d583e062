"""`danlu env sync NAME` (uv sync of envs/NAME) and `danlu env list`."""

from __future__ import annotations

import json
from argparse import Namespace

from ..errors import NothingToDo, UserError
from .output import err


def run(args: Namespace) -> int:
    """`danlu env sync NAME` (uv sync of envs/NAME) and `danlu env list`."""
    from .. import envs

    if args.env_command == "sync":
        info = envs.sync(args.name)
        if getattr(args, "json", False):
            print(json.dumps(info))
        else:
            print(info["python"])
        err(
            f"synced env {info['name']} in {info['seconds']:.1f} s: {info['venv']} (python {info['python_version']}); "
            f"use it with env=uv env.name={info['name']}"
        )
        return 0
    if args.env_command == "list":
        rows = envs.listing()
        if getattr(args, "json", False):
            print(json.dumps(rows, indent=1))
            return 0
        if not rows:
            raise NothingToDo(
                "no environments (no envs/<name>/pyproject.toml here or in danlu's envs/)",
                "create envs/NAME/pyproject.toml, then `danlu env sync NAME`",
            )
        width = max(len(r["name"]) for r in rows)
        print(f"{'NAME':<{width}}  SYNCED  PYTHON    DIR")
        for r in rows:
            synced = "yes" if r["synced"] else "no"
            print(f"{r['name']:<{width}}  {synced:<6}  {r['python_version'] or '-':<8}  {r['dir']}")
        return 0
    raise UserError("`danlu env` needs an action", "danlu env sync NAME | danlu env list")
