"""`danlu show RUN`: everything needed to reproduce a run (views/show.py); --diff: its code's uncommitted changes."""

from __future__ import annotations

import json
from argparse import Namespace
from typing import Any, Dict, List

from .common import open_store, store_errors
from .output import err


def _uncommitted(data: Dict[str, Any]) -> List[str]:
    """The diff of the latest attempt's snapshot against its commit (a message on stderr when there is none)."""
    from ..code.read import snapshot_of, uncommitted_diff

    code = data["code"]
    snap = snapshot_of({"code": code["snapshot"], "run_dir": data["run_dir"]}) if code else None
    if snap is None:
        err(
            "no uncommitted diff: "
            + ("the snapshot was removed by danlu gc" if code else "the run used its live workdir")
        )
        return []
    lines = uncommitted_diff(snap)
    if snap.commit is None:
        err(f"no uncommitted diff: {snap.workdir} is not in git (the frozen files: {snap.tree})")
    elif not lines:
        err(f"no uncommitted diff: snapshot {snap.short} is commit {snap.commit[:10]} as committed")
    return lines


@store_errors
def run(args: Namespace) -> int:
    from ..views.show import render_text, show_data

    data = show_data(open_store(), args.run)
    diff = _uncommitted(data) if args.diff else None
    if args.json:
        print(json.dumps(data | ({} if diff is None else {"uncommitted_diff": diff}), indent=1))
        return 0
    print(render_text(data, args.full), end="")
    if diff:
        print(f"uncommitted changes of snapshot {data['code']['snapshot'][:12]} (a/: commit, b/: the frozen files)")
        print("\n".join(diff))
    return 0
