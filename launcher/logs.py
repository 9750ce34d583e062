"""`danlu logs RUN`: per-node / per-rank logs of a run, merged with prefixes, tail and follow.

Where the logs are (written by the node agent, launcher/agent.py), per attempt:
  logs/attempt-N/node<K>.log   one per node for accelerate/torchrun: every local rank's lines,
                               tagged `[default<L>]:` by torch elastic (--tee);
  logs/attempt-N/rank<R>.log   one per task for lightning/python (one task per rank); for
                               accelerate/torchrun also rank<R>.log/.err, collected when the node ends;
  <sweep>/.slurm/job-<id>.out  Slurm's own output of the batch script (`--err`).
"""

from __future__ import annotations

import os
import re
import sys
import time
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import UserError
from .store import TERMINAL

_ORDER = re.compile(r"(\d+)")
_LOCAL = re.compile(rb"^\[default(\d+)\]:")


def _key(p: Path) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in _ORDER.split(p.name))


@dataclass
class Source:
    """One log file to show: lines prefixed with `tag` (merged view), or only one local rank's lines."""

    path: Path
    tag: str = ""
    node: Optional[int] = None  # a node log: `[default<L>]:` becomes this node's global rank
    ppn: Optional[int] = None  # ranks per node, to number them
    only_local: Optional[int] = None  # --rank on a node log: keep local rank L's lines, unprefixed


@dataclass
class Layout:
    ppn: Optional[int] = None  # training processes (ranks) per node
    per_task: Optional[bool] = None  # one agent (and log) per rank, not per node


def layout(row: Any) -> Layout:
    """How the run's logs are laid out, from its resolved config (as the agent decides it)."""
    try:
        import json

        from .config import spec_from_dict
        from .options import RunSpec
        from .validate import shape

        spec = spec_from_dict(RunSpec, json.loads(row["config"]))
        shp = shape(spec)
        return Layout(shp.procs_per_node, shp.tasks_per_node > 1 or spec.launch.kind in ("lightning", "python"))
    except Exception:
        return Layout()


def sources(row: Any, attempt: int, args: Namespace, lay: Layout) -> List[Source]:
    d = Path(row["run_dir"]) / "logs" / f"attempt-{attempt}"
    if d.exists() and not os.access(d, os.R_OK | os.X_OK):
        raise UserError(f"the run directory {str(d)!r} is not readable", "check its permissions (danlu creates it readable by its owner only)")
    if args.err:
        jid = row["job_id"] or ""
        return [Source(Path(row["run_dir"]).parent / ".slurm" / f"job-{jid}.out")]
    files = sorted((p for p in d.glob("*.log") if not p.name.startswith("agent-")), key=_key) if d.is_dir() else []
    nodes = [p for p in files if p.name.startswith("node")]
    ranks = [p for p in files if p.name.startswith("rank")]
    ppn = lay.ppn
    per_node = bool(nodes) or lay.per_task is False
    if args.rank is not None:
        r = args.rank
        if per_node and ppn and ppn > 1:  # one launcher per node: the rank's lines are in its node's log
            return [Source(d / f"node{r // ppn}.log", only_local=r % ppn)]
        if per_node and ppn == 1:
            return [Source(d / f"node{r}.log")]
        return [Source(d / f"rank{r}.log")]
    if args.node is not None:
        n = args.node
        if per_node:
            return [Source(d / f"node{n}.log", node=n, ppn=ppn)]
        if ppn:  # one task per rank: this node's ranks
            return [Source(d / f"rank{n * ppn + k}.log", tag=f"rank{n * ppn + k}") for k in range(ppn)]
        return [Source(d / f"rank{n}.log")]
    # merged view: per-node logs hold every rank's lines (tee); per-task runs have rank files only
    if nodes:
        return [Source(p, tag=p.stem, node=int(p.stem[4:]) if p.stem[4:].isdigit() else None, ppn=ppn) for p in nodes]
    return [Source(p, tag=p.stem) for p in ranks]


def show_logs(store: Any, args: Namespace) -> int:
    row = store.run(args.run)
    if row is None:
        raise UserError(f"no run named {args.run!r}", "`danlu status --all` lists runs (ids look like sweep/3)")
    attempts = store.attempts(args.run)
    latest = attempts[-1]
    attempt = args.attempt or latest["attempt"]
    if args.attempt is not None and not any(a["attempt"] == args.attempt for a in attempts):
        raise UserError(f"run {args.run!r} has no attempt {args.attempt}", f"it has attempts 1-{latest['attempt']}")
    run_dir = Path(row["run_dir"])
    if not run_dir.is_dir():
        what = "is not a directory" if run_dir.exists() else "is gone"
        raise UserError(f"the run directory {str(run_dir)!r} {what}",
                        "it was moved or deleted; `danlu show RUN` still has the config and script")
    if args.tail is not None and args.tail < 0:
        raise UserError(f"--tail {args.tail}: must be 0 or more", "e.g. --tail 50 for the last 50 lines")
    merged = dict(row) | {"job_id": next(a["job_id"] for a in attempts if a["attempt"] == attempt)}
    lay = layout(row) if not args.err else Layout()
    ppn = lay.ppn
    if ppn is not None and args.rank is not None and row["nodes"] and args.rank >= ppn * row["nodes"]:
        raise UserError(f"{args.run} has no rank {args.rank}", f"its ranks are 0-{ppn * row['nodes'] - 1}")
    if args.node is not None and row["nodes"] and args.node >= row["nodes"]:
        raise UserError(f"{args.run} has no node {args.node}", f"its nodes are numbered 0-{row['nodes'] - 1}")
    srcs = sources(merged, attempt, args, lay)
    follow = args.follow and attempt == latest["attempt"]
    if not follow and (args.rank is not None or args.node is not None) and not any(s.path.exists() for s in srcs):
        what = f"rank {args.rank}" if args.rank is not None else f"node {args.node}"
        raise UserError(f"no log for {what} of {args.run} (attempt {attempt}) yet",
                        "it may not have started; `danlu status` shows its state, `--follow` waits for it")
    prefix = len(srcs) > 1
    offsets: Dict[Path, int] = {}
    lines = _read_new(srcs, offsets, prefix)
    if args.tail is not None:
        lines = lines[-args.tail:] if args.tail > 0 else []
    _emit(lines)
    if not any(s.path.exists() for s in srcs):
        print(f"(no logs yet for {args.run}, attempt {attempt})", file=sys.stderr)
    if not follow:
        return 0
    from .status import refresh

    fixed = args.node is not None or args.rank is not None or args.err
    while True:
        time.sleep(1.0)
        if not fixed:  # node files appear as nodes start
            srcs = sources(merged, attempt, args, lay)
            prefix = len(srcs) > 1
        _emit(_read_new(srcs, offsets, prefix))
        state = refresh(store, store.latest(runs=[args.run]))[0]["state"]
        if state in TERMINAL:
            time.sleep(0.5)  # the last lines of a shared file system
            if not fixed:
                srcs = sources(merged, attempt, args, lay)
                prefix = len(srcs) > 1
            _emit(_read_new(srcs, offsets, prefix))
            print(f"({args.run} ended: {state})", file=sys.stderr)
            return 0


def _read_new(srcs: List[Source], offsets: Dict[Path, int], prefix: bool) -> List[str]:
    out: List[str] = []
    for s in srcs:
        f = s.path
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
        for raw in data[:end].splitlines():
            m = _LOCAL.match(raw)
            if s.only_local is not None:
                if m is None or int(m.group(1)) != s.only_local:
                    continue
                raw = raw[m.end():]
            line = raw.decode("utf-8", "replace")
            if prefix:
                if m is not None and s.node is not None and s.ppn and s.only_local is None and s.tag:
                    out.append(f"[{s.tag} rank{s.node * s.ppn + int(m.group(1))}] {line[m.end():].lstrip()}")
                else:
                    out.append(f"[{s.tag}] {line}")
            else:
                out.append(line)
    return out


def _emit(lines: List[str]) -> None:
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
