"""`danlu stacks RUN`: the Python stacks of every rank of a running run (views/stacks.py)."""

from __future__ import annotations

from argparse import Namespace

from .common import open_store, store_errors


@store_errors
def run(args: Namespace) -> int:
    from ..views.stacks import show_stacks

    return show_stacks(open_store(), args.run, args.timeout, args.json)
