"""`danlu logs RUN`: a run's per-node / per-rank logs (views/logs.py)."""

from __future__ import annotations

from argparse import Namespace

from .common import open_store, store_errors


@store_errors
def run(args: Namespace) -> int:
    from ..views.logs import LogsOptions, show_logs

    opts = LogsOptions(
        run=args.run,
        follow=args.follow,
        node=args.node,
        rank=args.rank,
        err=args.err,
        tail=args.tail,
        attempt=args.attempt,
    )
    return show_logs(open_store(), opts)
