"""`danlu notify SWEEP`: send the sweep's messages now (the summary job runs this once the sweep's jobs ended).

Each failed run whose failure was not sent yet (its batch script sends it as the job ends; a job Slurm killed
outright cannot), then the summary. The webhook is the sweep's notify.url, read only now; a delivery that fails
is retried and said on stderr (the summary job's output), and `danlu notify` still exits 0: a message never
changes how a run or the sweep ended.
"""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path
from typing import Any, Dict

from ..errors import UserError
from ..words import counted
from .common import open_store, store_errors
from .output import err


@store_errors
def run(args: Namespace) -> int:
    from ..layout import RunLayout
    from ..views import notify as messages
    from ..views.report import build
    from ..webhook import deliver
    from .report import sweep_runs

    store = open_store()
    rows, runs = sweep_runs(store, args.sweep)
    notify = _notify_config(store, rows)
    if not notify.get("url") and not args.dry_run:
        raise UserError(
            f"sweep {args.sweep} has no notify.url: there is nowhere to send its messages",
            "submit with notify.url=env:NAME (or file:PATH); `danlu notify "
            f"{args.sweep} --dry-run` prints the messages",
        )
    out = [messages.failure(r) for r in messages.to_announce(rows)] if notify.get("on_failure", True) else []
    if notify.get("summary", True) or args.dry_run:
        out.append(messages.summary(args.sweep, rows, build(runs)))
    if args.dry_run:
        for m in out:
            print(json.dumps(m))
        return 0
    for m in out:
        print(m["text"], flush=True)  # the summary job's output keeps what was sent
        if deliver(notify["url"], notify.get("format", "json"), m, err) and m["event"] == "run_failed":
            row = next(r for r in rows if r["run"] == m["run"])
            RunLayout(Path(row["run_dir"])).attempt(int(row["attempt"])).mark_notified(m["reason"])
    err(f"notify: {counted(len(out), 'message')} for {args.sweep}")
    return 0


def _notify_config(store: Any, rows: Any) -> Dict[str, Any]:
    """The notify.* of the sweep's runs (the same for all: one submit), from the config the store keeps."""
    for r in rows:
        full = store.run(r["run"])
        if full is not None:
            return dict(json.loads(full["config"]).get("notify") or {})
    return {}
