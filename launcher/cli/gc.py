"""`danlu gc`: remove the code snapshots no run of the store names, and the file contents no snapshot holds."""

from __future__ import annotations

import json
from argparse import Namespace

from .common import store_errors
from .output import err


@store_errors
def run(args: Namespace) -> int:
    from ..code.gc import collect_all
    from ..store import Store

    store = Store()  # a submit's attempts name their code from the start (SUBMITTING): no recovery needed first
    referenced = store.code_keys()
    done = collect_all(store.run_dirs(), referenced, args.older_than, args.dry_run)
    if args.json:
        print(json.dumps([c.as_json() for c in done]))
    else:
        for collected in done:
            print(collected.line(args.dry_run))
    if not done:
        err("no code store in the runs dirs of the store's runs: nothing to remove")
    elif args.dry_run:
        err("dry run: nothing removed")
    return 0
