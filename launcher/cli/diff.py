"""`danlu diff RUN_A RUN_B`: what differs between two runs: config, frozen code, job environment (views/diff.py).
Exits 0 whether or not anything differs."""

from __future__ import annotations

import json
from argparse import Namespace

from .common import open_store, store_errors
from .output import err


@store_errors
def run(args: Namespace) -> int:
    from ..views.diff import as_json, diff_data, render_text

    data = diff_data(open_store(), args.run_a, args.run_b)
    if args.json:
        print(json.dumps(as_json(data), indent=1))
    else:
        text = render_text(data, args.stat)
        print(text, end="")
        if not text:
            err(f"{args.run_a} and {args.run_b} differ in nothing danlu recorded: config, code and environment")
    return 0
