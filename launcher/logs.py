"""`danlu logs RUN`: per-node / per-rank logs of a run, merged with prefixes, tail and follow."""

from __future__ import annotations

import os
import re
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Any, Dict, List

from .errors import UserError
from .store import TERMINAL

_ORDER = re.compile(r"(\d+)")


def _key(p: Path) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in _ORDER.split(p.name))


def pick_files(row: Any, attempt: int, args: Namespace) -> List[Path]:
    d = Path(row["run_dir"]) / "logs" / f"attempt-{attempt}"
    if d.exists() and not os.access(d, os.R_OK | os.X_OK):
        raise UserError(f"the run directory {str(d)!r} is not readable", "check its permissions (danlu creates it readable by its owner only)")
    if args.err:
        jid = row["job_id"] or ""
        return [Path(row["run_dir"]).parent / ".slurm" / f"job-{jid}.out"]
    if args.rank is not None:
        files = [d / f"rank{args.rank}.log"]
        return files if files[0].exists() else [d / f"rank{args.rank}.log"]
    if args.node is not None:
        return [d / f"node{args.node}.log"]
    files = sorted((p for p in d.glob("*.log") if not p.name.startswith("agent-")), key=_key) if d.is_dir() else []
    nodes = [p for p in files if p.name.startswith("node")]
    ranks = [p for p in files if p.name.startswith("rank")]
    # merged view: per-node logs already hold every rank's lines (tee); per-task runs have rank files only
    return nodes or ranks


def show_logs(store: Any, args: Namespace) -> int:
    row = store.run(args.run)
    if row is None:
        raise UserError(f"no run named {args.run!r}", "`danlu status --all` lists runs (ids look like sweep/3)")
    attempts = store.attempts(args.run)
    latest = attempts[-1]
    attempt = args.attempt or latest["attempt"]
    if args.attempt is not None and not any(a["attempt"] == args.attempt for a in attempts):
        raise UserError(f"run {args.run!r} has no attempt {args.attempt}", f"it has attempts 1-{latest['attempt']}")
    merged = dict(row) | {"job_id": next(a["job_id"] for a in attempts if a["attempt"] == attempt)}
    files = pick_files(merged, attempt, args)
    if args.rank is not None and not files[0].exists():
        raise UserError(f"no log for rank {args.rank} of {args.run}", "ranks have their own file only with more than one process; try --node")
    if args.node is not None and not files[0].exists():
        raise UserError(f"no log for node {args.node} of {args.run}", "nodes are numbered from 0; `danlu show` lists the nodes")
    prefix = len(files) > 1
    offsets: Dict[Path, int] = {}
    lines = _read_new(files, offsets, prefix)
    if args.tail is not None:
        lines = lines[-args.tail:] if args.tail > 0 else []
    _emit(lines)
    if not files or not any(f.exists() for f in files):
        print(f"(no logs yet for {args.run}, attempt {attempt})", file=sys.stderr)
    while args.follow:
        time.sleep(1.0)
        _emit(_read_new(files if args.node is not None or args.rank is not None or args.err else
                        pick_files(merged, attempt, args), offsets, prefix))
        state = store.latest(runs=[args.run])[0]["state"]
        if state in TERMINAL:
            from .status import refresh

            if refresh(store, store.latest(runs=[args.run]))[0]["state"] in TERMINAL:
                _emit(_read_new(pick_files(merged, attempt, args), offsets, prefix))
                return 0
        else:
            from .status import refresh

            refresh(store, store.latest(runs=[args.run]))
    return 0


def _read_new(files: List[Path], offsets: Dict[Path, int], prefix: bool) -> List[str]:
    out: List[str] = []
    for f in files:
        try:
            with open(f, "rb") as fh:
                fh.seek(offsets.get(f, 0))
                data = fh.read()
        except FileNotFoundError:
            continue
        except PermissionError:
            raise UserError(f"cannot read {str(f)!r}", "check the run directory's permissions") from None
        end = data.rfind(b"\n") + 1
        offsets[f] = offsets.get(f, 0) + end
        tag = f.stem
        for line in data[:end].decode("utf-8", "replace").splitlines():
            out.append(f"[{tag}] {line}" if prefix else line)
    return out


def _emit(lines: List[str]) -> None:
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
