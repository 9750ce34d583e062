"""`danlu options`: every config key with its default and help (from the dataclasses in spec/options.py)."""

from __future__ import annotations

import json
from argparse import Namespace


def run(args: Namespace) -> int:
    from ..spec.options import RunSpec, describe

    rows = describe(RunSpec)
    if args.json:
        print(json.dumps([{"key": k, "default": d, "help": h} for k, d, h in rows], indent=1))
        return 0
    width = max(len(k) for k, _, _ in rows)
    for k, d, h in rows:
        print(f"{k:<{width}}  {d:<14} {h}")
    return 0
