"""`danlu cluster`: partitions with their GPUs total / allocated / free / down, pending jobs and your GPUs."""

from __future__ import annotations

import json
import os
import sys
from argparse import Namespace

from ..errors import UserError


def run(args: Namespace) -> int:
    from .. import slurm
    from ..views import cluster

    try:
        data = cluster.collect()
    except slurm.SlurmUnavailable as e:
        if "not found" in str(e):
            raise UserError(f"no Slurm here: {e}", "run `danlu cluster` on a login node of your Slurm cluster") from None
        raise
    if args.json:
        print(json.dumps(data, indent=1))
    elif sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        cluster.render_rich(data)
    else:
        print(cluster.render_plain(data))
    return 0
