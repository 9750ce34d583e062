"""`danlu show RUN`: everything needed to reproduce a run (views/show.py)."""

from __future__ import annotations

import json
from argparse import Namespace

from .common import open_store, store_errors


@store_errors
def run(args: Namespace) -> int:
    from ..views.show import render_text, show_data

    data = show_data(open_store(), args.run)
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        print(render_text(data, args.full), end="")
    return 0
