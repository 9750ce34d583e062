"""`danlu logs RUN`: per-node / per-rank logs of a run, merged with prefixes, tail and follow.

Which files exist is the run layout's business (launcher/layout.py); per attempt and restart there are
  node<K>.log   one per node for accelerate/torchrun: every local rank's lines, tagged `[default<L>]:` by
                torch elastic (--tee);
  rank<R>.log   one per task for lightning/python (one task per rank); for accelerate/torchrun also
                rank<R>.log/.err, collected when the node ends;
and Slurm's own output of the batch script (`--err`). A requeued attempt has one set per restart: each
stream shows its restarts one after the other.
"""

from __future__ import annotations

import bisect
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..backends import batch_output
from ..errors import UserError
from ..layout import AttemptLayout, RestartLayout, RunLayout, launcher_rank_logs, log_per_task, natural_key, time_index
from ..slurm import assigned_nodes
from ..state.reconcile import refresh

_LOCAL = re.compile(rb"^\[default(\d+)\]:")


@dataclass
class Source:
    """One log stream to show (its file in each restart, in order): lines prefixed with `tag` (merged view),
    or only one local rank's lines."""

    paths: List[Path] = field(default_factory=list)
    tag: str = ""
    node: Optional[int] = None  # a node log: `[default<L>]:` becomes this node's global rank
    ppn: Optional[int] = None  # ranks per node, to number them
    only_local: Optional[int] = None  # --rank on a node log: keep local rank L's lines, unprefixed
    drop_tee: bool = False  # a node log whose ranks' lines are shown from their own rank logs

    def exists(self) -> bool:
        return any(p.exists() for p in self.paths)


@dataclass
class Layout:
    ppn: Optional[int] = None  # training processes (ranks) per node
    per_task: Optional[bool] = None  # one agent (and log) per rank, not per node
    rank_files: bool = False  # a launcher's ranks get rank<R>.log/.err of their own (not only its `--tee`)


def layout(row: Any) -> Layout:
    """How the run's logs are laid out, from its resolved config (as the agent decides it)."""
    try:
        import json

        from ..spec.compose import spec_from_dict
        from ..spec.options import RunSpec
        from ..spec.validate import shape

        spec = spec_from_dict(RunSpec, json.loads(row["config"]))
        shp = shape(spec)
        return Layout(
            shp.procs_per_node,
            log_per_task(spec.launch.kind, shp.tasks_per_node),
            launcher_rank_logs(spec.launch.kind, shp.procs_per_node * shp.nodes),
        )
    except Exception:
        return Layout()


def _streams(restarts: List[RestartLayout], pick: Any) -> List[Path]:
    return [pick(r) for r in restarts]


_AGENT_START = re.compile(r"\[danlu agent \S+ (\S+)\] run \S+ attempt \d+ restart \d+: node (\d+)/")


def hosts(restarts: List[RestartLayout]) -> Dict[int, str]:
    """Node index -> host name, from the agents' first lines (the latest restart's wins)."""
    out: Dict[int, str] = {}
    for r in restarts:
        for path in r.agent_logs().values():
            try:
                with open(path, errors="replace") as f:
                    m = _AGENT_START.search(f.readline())
            except OSError:
                continue
            if m:
                out[int(m.group(2))] = m.group(1)
    return out


@dataclass(frozen=True)
class LogsOptions:
    """What `danlu logs` is asked to show of one run (every field but `run` as its flag's default leaves it)."""

    run: str
    follow: bool = False  # keep printing new lines until the run ends
    node: Optional[int] = None  # only this node's logs
    rank: Optional[int] = None  # only this rank's lines
    err: bool = False  # Slurm's own output of the batch script instead
    tail: Optional[int] = None  # only the last N lines
    attempt: Optional[int] = None  # an earlier attempt (None: the latest)


def _check_readable(d: Path) -> None:
    if d.exists() and not os.access(d, os.R_OK | os.X_OK):
        raise UserError(
            f"the run directory {str(d)!r} is not readable",
            "check its permissions (danlu creates it readable by its owner only)",
        )


@dataclass
class AttemptLogs:
    """The logs an attempt's restarts hold, and the streams that show one rank, one node or all of them."""

    restarts: List[RestartLayout]
    nodes: List[str]  # the node<K>.log names of any restart, in node order
    ranks: List[int]  # the ranks with a rank<R>.log in any restart
    ppn: Optional[int]  # ranks per node
    per_node: bool  # one launcher per node, which writes the node's log
    host: Dict[int, str]  # node index -> host name

    @classmethod
    def find(cls, attempt: AttemptLayout, lay: Layout) -> AttemptLogs:
        restarts = attempt.restarts()
        nodes = sorted({p.name for r in restarts for p in r.node_logs()}, key=lambda n: natural_key(Path(n)))
        ranks = sorted({int(p.stem[4:]) for r in restarts for p in r.rank_logs() if p.stem[4:].isdigit()})
        return cls(restarts, nodes, ranks, lay.ppn, bool(nodes) or lay.per_task is False, hosts(restarts))

    def node_of(self, rank: int) -> int:
        return rank // self.ppn if self.ppn else rank

    def of_own_rank(self, r: int) -> List[Source]:
        """rank<r>.log and, where a launcher split them, rank<r>.err: every line of that rank."""
        restarts = self.restarts
        tag = f"{self.host.get(self.node_of(r), f'node{self.node_of(r)}')} rank{r}"
        out = [Source(_streams(restarts, lambda x: x.rank_log(r)), tag=tag)]
        if any(x.rank_log(r, stderr=True).exists() for x in restarts):
            out.append(Source(_streams(restarts, lambda x: x.rank_log(r, stderr=True)), tag=tag))
        return out

    def of_rank(self, r: int) -> List[Source]:
        """--rank: the rank's own files, else its lines in its node's log."""
        ppn = self.ppn
        if self.per_node and r in self.ranks:  # followed live from the launcher's per-rank files (job/timed_log.py)
            return self.of_own_rank(r)
        if self.per_node and ppn and ppn > 1:  # one launcher per node: the rank's lines are in its node's log
            return [Source(_streams(self.restarts, lambda x: x.node_log(r // ppn)), only_local=r % ppn)]
        if self.per_node and ppn == 1:
            return [Source(_streams(self.restarts, lambda x: x.node_log(r)))]
        return self.of_own_rank(r)

    def of_node(self, n: int) -> List[Source]:
        """--node: the node's log, or the own logs of its ranks where each rank has one."""
        if self.per_node:
            return [Source(_streams(self.restarts, lambda x: x.node_log(n)), node=n, ppn=self.ppn)]
        if self.ppn:  # one task per rank: this node's ranks
            return [src for k in range(self.ppn) for src in self.of_own_rank(n * self.ppn + k)]
        return self.of_own_rank(n)

    def merged(self, drop_tee: bool) -> List[Source]:
        """Every rank's own log where there is one, and each node's launcher lines (its copy of its ranks' lines
        left out with `drop_tee`)."""
        out: List[Source] = []
        for name in self.nodes:
            stem = name[: -len(".log")]
            n = int(stem[4:]) if stem[4:].isdigit() else None
            out.append(
                Source(
                    [x.root / name for x in self.restarts],
                    tag=self.host.get(n, stem) if n is not None else stem,
                    node=n,
                    ppn=self.ppn,
                    drop_tee=drop_tee,
                )
            )
        for r in self.ranks:
            out.extend(self.of_own_rank(r))
        return out


def sources(row: Any, attempt: AttemptLayout, opts: LogsOptions, lay: Layout) -> List[Source]:
    """The streams to show of one attempt: Slurm's output of the batch script, one rank's, one node's, or all."""
    _check_readable(attempt.root)
    if opts.err:
        batch_out = batch_output(row)
        return [Source([batch_out] if batch_out else [])]
    logs = AttemptLogs.find(attempt, lay)
    if opts.rank is not None:
        return logs.of_rank(opts.rank)
    if opts.node is not None:
        return logs.of_node(opts.node)
    # merged view: every rank's own log where there is one (a launcher stops copying its ranks' lines into its own
    # output once it is stopping), each node's launcher lines, labelled `[host rank<R>]` and interleaved by time.
    # The tee is dropped by the run's shape, not by which rank logs exist yet: a --follow that read a rank's first
    # line from the tee before the agent had copied its own file would show it twice
    return logs.merged(drop_tee=bool(logs.ranks) or lay.rank_files)


def _attempt_to_show(store: Any, opts: LogsOptions) -> Tuple[Any, Any, int]:
    """(the run's row, the attempt to show, the latest attempt's number)."""
    row = store.run(opts.run)
    if row is None:
        raise UserError(f"no run named {opts.run!r}", "`danlu status --all` lists runs (ids look like sweep/3)")
    attempts = store.attempts(opts.run)
    latest = attempts[-1]["attempt"]
    number = opts.attempt or latest
    if opts.attempt is not None and not any(a["attempt"] == opts.attempt for a in attempts):
        raise UserError(f"run {opts.run!r} has no attempt {opts.attempt}", f"it has attempts 1-{latest}")
    return row, next(a for a in attempts if a["attempt"] == number), latest


def _check_run_dir(run_dir: Path, shown: Any) -> None:
    """A run's folder is made by its node agents when they start (the sweep's, by the submit): missing while the
    attempt is not final (queued, or its job just started), and for good when it ended without ever starting
    (cancelled while pending). Missing otherwise, or not a folder, it was moved or deleted."""
    never_ran = not shown["final"] or (shown["started"] is None and not assigned_nodes(shown["nodelist"]))
    not_yet = never_ran and RunLayout(run_dir).sweep.root.is_dir() and not run_dir.exists()
    if not run_dir.is_dir() and not not_yet:
        what = "is not a directory" if run_dir.exists() else "is gone"
        raise UserError(
            f"the run directory {str(run_dir)!r} {what}",
            "it was moved or deleted; `danlu show RUN` still has the config and script",
        )


def _check_rank_and_node(opts: LogsOptions, nodes: Optional[int], ppn: Optional[int]) -> None:
    """--rank and --node within the run's ranks and nodes (where its shape is known)."""
    if ppn is not None and opts.rank is not None and nodes and opts.rank >= ppn * nodes:
        raise UserError(f"{opts.run} has no rank {opts.rank}", f"its ranks are 0-{ppn * nodes - 1}")
    if opts.node is not None and nodes and opts.node >= nodes:
        raise UserError(f"{opts.run} has no node {opts.node}", f"its nodes are numbered 0-{nodes - 1}")


def _check_some_log(opts: LogsOptions, number: int, srcs: List[Source]) -> None:
    """A rank or node asked for without --follow must have a log already."""
    if (opts.rank is not None or opts.node is not None) and not any(s.exists() for s in srcs):
        what = f"rank {opts.rank}" if opts.rank is not None else f"node {opts.node}"
        raise UserError(
            f"no log for {what} of {opts.run} (attempt {number}) yet",
            "it may not have started; `danlu status` shows its state, `--follow` waits for it",
        )


def _labelled(opts: LogsOptions, lay: Layout, nodes: Optional[int], srcs: List[Source]) -> bool:
    """Whether lines carry their `[host rank<R>]` label: in the merged view of a run with several ranks, and on a
    node of one-task-per-rank runs. Decided once, from the run's shape, so that a --follow labels its lines the same
    from start to end."""
    world = (lay.ppn or 0) * (nodes or 0)
    return opts.rank is None and (opts.node is None or bool(lay.per_task)) and (world > 1 if world else len(srcs) > 1)


def show_logs(store: Any, opts: LogsOptions) -> int:
    """`danlu logs`: print the lines asked for, then (with --follow, of the latest attempt) new ones until the run
    ends."""
    row, shown, latest = _attempt_to_show(store, opts)
    number = shown["attempt"]
    run_dir = Path(row["run_dir"])
    _check_run_dir(run_dir, shown)
    if opts.tail is not None and opts.tail < 0:
        raise UserError(f"--tail {opts.tail}: must be 0 or more", "e.g. --tail 50 for the last 50 lines")
    merged = dict(row) | {"job_id": shown["job_id"]}
    attempt = RunLayout(run_dir).attempt(number)
    lay = layout(row) if not opts.err else Layout()
    _check_rank_and_node(opts, row["nodes"], lay.ppn)
    srcs = sources(merged, attempt, opts, lay)
    follow = opts.follow and number == latest
    if not follow:
        _check_some_log(opts, number, srcs)
    offsets: Dict[Path, int] = {}
    prefix = _labelled(opts, lay, row["nodes"], srcs)
    lines = _read_new(srcs, offsets, prefix)
    if opts.tail is not None:
        lines = lines[-opts.tail :] if opts.tail > 0 else []
    _emit(lines)
    if not any(s.exists() for s in srcs):
        print(f"(no logs yet for {opts.run}, attempt {number})", file=sys.stderr)
    if follow:
        _follow(store, opts, lambda: sources(merged, attempt, opts, lay), offsets, prefix)
    return 0


def _follow(
    store: Any, opts: LogsOptions, find: Callable[[], List[Source]], offsets: Dict[Path, int], prefix: bool
) -> None:
    """New lines every second until the run's attempt is final, then its last ones."""
    while True:
        time.sleep(1.0)
        _emit(_read_new(find(), offsets, prefix))  # node files and restarts appear as the job goes on
        row = refresh(store, store.latest(runs=[opts.run])).rows[0]
        if row["final"]:
            time.sleep(0.5)  # the last lines of a shared file system
            _emit(_read_new(find(), offsets, prefix))
            print(f"({opts.run} ended: {row['state']})", file=sys.stderr)
            return


def _read_new(srcs: List[Source], offsets: Dict[Path, int], prefix: bool) -> List[str]:
    """New whole lines of every source; several sources are interleaved by when their lines were written."""
    timed: List[Tuple[float, int, str]] = []
    for s in srcs:
        for f in s.paths:
            timed.extend((t, len(timed), line) for t, line in _read_file(s, f, offsets, prefix))
    if len(srcs) > 1:
        timed.sort()
    return [line for _, _, line in timed]


def _times(f: Path) -> Tuple[List[int], List[float]]:
    """The time index written beside a log (launcher/layout.time_index): offsets and their times."""
    offs: List[int] = []
    times: List[float] = []
    try:
        with open(time_index(f)) as fh:
            for entry in fh:
                parts = entry.split()
                if len(parts) == 2:
                    offs.append(int(parts[0]))
                    times.append(float(parts[1]))
    except (OSError, ValueError):
        pass
    return offs, times


def _read_file(s: Source, f: Path, offsets: Dict[Path, int], prefix: bool) -> List[Tuple[float, str]]:
    try:
        with open(f, "rb") as fh:
            start = offsets.get(f, 0)
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return []
    except PermissionError:
        raise UserError(f"cannot read {str(f)!r}", "check the run directory's permissions") from None
    end = data.rfind(b"\n") + 1
    offsets[f] = start + end
    offs, times = _times(f) if end else ([], [])
    out: List[Tuple[float, str]] = []
    at = start
    when = 0.0
    for raw in data[:end].splitlines(keepends=True):
        k = bisect.bisect_right(offs, at) - 1
        when = times[k] if k >= 0 else when
        at += len(raw)
        raw = raw.rstrip(b"\r\n")
        m = _LOCAL.match(raw)
        if s.only_local is not None:
            if m is None or int(m.group(1)) != s.only_local:
                continue
            raw = raw[m.end() :]
        if s.drop_tee and m is not None:
            continue  # shown from the rank's own log
        line = raw.decode("utf-8", "replace")
        if prefix:
            if m is not None and s.node is not None and s.ppn and s.only_local is None and s.tag:
                line = f"[{s.tag} rank{s.node * s.ppn + int(m.group(1))}] {line[m.end() :].lstrip()}"
            elif s.node is not None and s.ppn == 1:
                line = f"[{s.tag} rank{s.node}] {line}"  # one rank on this node: its launcher's lines are its own
            else:
                line = f"[{s.tag}] {line}"
        out.append((when, line))
    return out


def _emit(lines: List[str]) -> None:
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
