"""The Python stacks of a node's ranks, recorded before the agent ends them (a hang: job/watchdog.py).

Two ways, tried in order for each rank:
  * a tracer: `py-spy dump` (with the native frames when it can read them), on the job's PATH. It reads a process's
    memory, so it needs ptrace permission: under Yama `ptrace_scope` 1 only an ancestor of the rank may, and py-spy
    started by the agent is its sibling, not its ancestor; it works where ptrace is open (ptrace_scope 0,
    CAP_SYS_PTRACE). It leaves the rank running.
  * faulthandler, which needs no permission: the agent starts every launcher with PYTHONFAULTHANDLER=1
    (job/node_env.py), so SIGABRT makes a rank write every thread's traceback to its stderr and die. The agent reads
    the dump where that stderr goes: the file the rank's stderr is (torch elastic's per-rank files), else the log
    the agent copies the launcher's output into. The rank's core-dump limit is lowered to 0 first.

The result, one section per rank, is `stacks-<tag>.txt` in the restart's folder (format: state/stack_text.py).
Standard library only.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..layout import RestartLayout
from .agent_log import Say

TRACER = "py-spy"
TRACER_TIMEOUT_S = 10.0  # one rank's py-spy dumps, native frames or not
PLAIN_DUMP_S = 2.0  # of which the dump without native frames keeps this much
RECORD_LIMIT_S = 15.0  # the whole recording of a node's ranks: Slurm may be about to end the job
DUMP_MARK = b"Fatal Python error"
MAX_DUMP_BYTES = 512_000


@dataclass
class StacksReport:
    """What was recorded: the file, and how each rank's stack was read."""

    path: Path
    ways: Dict[int, str] = field(default_factory=dict)  # rank -> py-spy, py-spy --native, faulthandler, none
    seconds: float = 0.0

    def way(self) -> str:
        return ways_words(self.ways)


def ways_words(ways: Dict[int, str]) -> str:
    """`faulthandler`, or for mixed ways `py-spy for ranks 0,1; faulthandler for rank 2`."""
    by: Dict[str, List[int]] = {}
    for rank in sorted(ways):
        by.setdefault(ways[rank], []).append(rank)
    if len(by) <= 1:
        return next(iter(by), "none")
    return "; ".join(f"{w} for rank{'s' if len(r) > 1 else ''} {','.join(map(str, r))}" for w, r in by.items())


def find_tracer() -> Optional[str]:
    """py-spy on the job's PATH (an activated environment that installed it), if any."""
    return shutil.which(TRACER)


def rank_numbers(pids: List[int], first_rank: int) -> Dict[int, int]:
    """rank -> pid: each process's RANK variable (torch elastic and the agent set it), else its place after
    `first_rank`."""
    out: Dict[int, int] = {}
    for i, pid in enumerate(pids):
        rank = _environ(pid).get("RANK", "")
        out[int(rank) if rank.isdigit() and int(rank) not in out else first_rank + i] = pid
    return out


def _environ(pid: int) -> Dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {k: v for k, _, v in pairs}


def record_hung_stacks(
    rank_pids: Dict[int, int],
    logs: RestartLayout,
    say: Say,
    tag: str,
    tracer: Optional[Callable[[], Optional[str]]] = None,
    signal_at: float = 0.0,
    limit_s: float = RECORD_LIMIT_S,
    host: str = "",
) -> StacksReport:
    """Record the stacks of `rank_pids` (rank -> pid) into the restart's `stacks-<tag>.txt` within `limit_s`. The
    tracer (`tracer()` finds it: py-spy on PATH by default) first; faulthandler for the ranks it could not read, not
    before `signal_at` (the other nodes' agents signal theirs at that same time: a rank that dies breaks its peers'
    collectives)."""
    way = StacksWay(tracer or find_tracer, faulthandler_at=signal_at, shared_log=logs.log(tag))
    way.host = host or way.host
    return record_stacks(rank_pids, logs.stacks(tag), say, way, f"the training processes of {tag}", limit_s)


@dataclass
class StacksWay:
    """How stacks are read: the tracer, and faulthandler (which ends the rank it dumps) at a time, or never."""

    tracer: Callable[[], Optional[str]] = find_tracer
    faulthandler_at: Optional[float] = None  # None: never faulthandler (the ranks must go on)
    shared_log: Optional[Path] = None  # where a rank's stderr lands when it is a pipe the agent copies
    host: str = field(default_factory=socket.gethostname)  # the node's name as Slurm calls it, in the file's head


def record_stacks(
    rank_pids: Dict[int, int], path: Path, say: Say, way: StacksWay, what: str, limit_s: float
) -> StacksReport:
    """Read the stacks of `rank_pids` the `way` allows within `limit_s` and write them to `path`, whole or not at
    all (another agent or `danlu stacks` may read it any moment)."""
    started = time.time()
    deadline = started + limit_s
    texts: Dict[int, Tuple[str, str]] = {}  # rank -> (way, text)
    found = way.tracer()
    if found and rank_pids:
        texts.update(_by_tracer(found, rank_pids, min(deadline - 3.0, started + TRACER_TIMEOUT_S)))
    left = {r: p for r, p in rank_pids.items() if r not in texts}
    if left and way.faulthandler_at is not None and way.shared_log is not None:
        time.sleep(max(0.0, min(way.faulthandler_at, deadline - 2.0) - time.time()))
        texts.update(_by_faulthandler(left, way.shared_log, deadline))
    unread = f"none: {_why_unread(bool(found), way.faulthandler_at is not None)}"
    report = StacksReport(path)
    sections = []
    for rank in sorted(rank_pids):
        how, text = texts.get(rank, (unread, ""))
        report.ways[rank] = how.partition(":")[0]
        sections.append(f"rank {rank} (pid {rank_pids[rank]}) via {how}\n" + (text.rstrip() + "\n" if text else ""))
    head = f"# {what} on {way.host} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(head + "\n".join(sections))
    tmp.replace(path)
    report.seconds = time.time() - started
    say(f"stacks of {len(rank_pids)} training processes in {path.name} ({report.way()}, {report.seconds:.1f}s)")
    return report


def _why_unread(tracer: bool, faulthandler: bool) -> str:
    if faulthandler:
        return "not read in time"
    if tracer:
        return "py-spy could not read it (no ptrace permission?), and faulthandler would end it"
    return "no tracer could read it (py-spy is not in the job's environment), and faulthandler would end it"


# ---- the tracer ------------------------------------------------------------------------------------------------
def _by_tracer(tracer: str, rank_pids: Dict[int, int], until: float) -> Dict[int, Tuple[str, str]]:
    """The ranks py-spy could read, in parallel: rank -> (way, its dump)."""
    out: Dict[int, Tuple[str, str]] = {}
    _in_threads([(_trace_one, (tracer, rank, pid, until, out)) for rank, pid in rank_pids.items()], until)
    return dict(out)


def _in_threads(calls: List[Tuple[Callable[..., None], Tuple[Any, ...]]], until: float) -> None:
    """Run each call in a thread of its own; wait for them until `until` (and a second more)."""
    threads = [threading.Thread(target=fn, args=args, daemon=True) for fn, args in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, until - time.time()) + 1.0)


def _trace_one(tracer: str, rank: int, pid: int, until: float, out: Dict[int, Tuple[str, str]]) -> None:
    """With the native frames first, else without. py-spy cannot merge native frames with every interpreter and
    library, and reading a big library's symbols takes seconds on a busy node: the plain dump keeps time of its own."""
    native, why = _dump(tracer, pid, ["--native"], until - PLAIN_DUMP_S)
    if native:
        out[rank] = (f"{TRACER} --native", native)
        return
    plain, _ = _dump(tracer, pid, [], until)
    if plain:
        out[rank] = (f"{TRACER}: no native frames ({why})", plain)


def _dump(tracer: str, pid: int, extra: List[str], until: float) -> Tuple[str, str]:
    """py-spy's dump of `pid` by `until`: (its text, "") or ("", why there is none)."""
    left = until - time.time()
    if left <= 0.2:
        return "", "no time left"
    argv = [tracer, "dump", "--pid", str(pid), "--full-filenames", *extra]
    what = " ".join([TRACER, "dump", *extra])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=left, errors="replace")
    except subprocess.TimeoutExpired:
        return "", f"{what} took over {left:.0f}s"
    except OSError as e:
        return "", f"{TRACER} could not start: {e.strerror}"
    if done.returncode == 0 and done.stdout.strip():
        return done.stdout, ""
    return "", f"{what}: {tracer_error(done.stderr) or f'exit code {done.returncode}'}"


def tracer_error(stderr: str) -> str:
    """py-spy's error and its causes on one line (`Failed to get stack traces: Failed to suspend process: EPERM:
    Operation not permitted`), without the backtrace that follows them."""
    parts: List[str] = []
    for line in stderr.splitlines():
        text = line.strip()
        if text.startswith("Stack backtrace:"):
            break
        text = text.removeprefix("Error:").strip()
        head, _, rest = text.partition(": ")
        text = rest if head.isdigit() else text
        if text and text != "Caused by:" and text not in parts:
            parts.append(text)
    return ": ".join(parts)[:300]


# ---- faulthandler ----------------------------------------------------------------------------------------------
def stderr_file(pid: int, shared: Path) -> Path:
    """Where a process's stderr lands: the regular file its descriptor 2 is (torch elastic's per-rank file), else
    `shared`, the log the agent copies a pipe into."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/2")
    except OSError:
        return shared
    return Path(target) if target.startswith("/") and os.path.isfile(target) else shared


def _by_faulthandler(rank_pids: Dict[int, int], shared: Path, deadline: float) -> Dict[int, Tuple[str, str]]:
    """SIGABRT to each rank and its dump read back. Ranks whose stderr lands in one file go one after the other
    (their dumps would mix); each file's ranks run in a thread of their own."""
    by_file: Dict[Path, List[Tuple[int, int]]] = {}
    for rank, pid in sorted(rank_pids.items()):
        by_file.setdefault(stderr_file(pid, shared), []).append((rank, pid))
    out: Dict[int, Tuple[str, str]] = {}
    _in_threads([(_dump_each, (path, ranks, deadline, out)) for path, ranks in by_file.items()], deadline)
    return dict(out)


def _dump_each(path: Path, ranks: List[Tuple[int, int]], deadline: float, out: Dict[int, Tuple[str, str]]) -> None:
    for rank, pid in ranks:
        out[rank] = _dump_one(pid, path, deadline)


def _dump_one(pid: int, path: Path, deadline: float) -> Tuple[str, str]:
    """(way, text) of one rank: its faulthandler dump, or `none: why`."""
    if not _alive(pid):
        return "none: the process had ended", ""
    offset = _size(path)
    _no_core(pid)
    try:
        os.kill(pid, signal.SIGABRT)
    except (ProcessLookupError, PermissionError) as e:
        return f"none: SIGABRT failed ({e.strerror})", ""
    seen = -1
    while time.time() < deadline:
        time.sleep(0.05)
        size = _size(path)
        if not _alive(pid) and size == seen:
            break  # it died and its stderr has stopped growing (a pipe's copy may lag behind the death)
        seen = size
    dump = _dump_text(path, offset)
    if dump:
        return "faulthandler", dump
    return "none: no faulthandler dump (PYTHONFAULTHANDLER unset?)", ""


def _dump_text(path: Path, offset: int) -> str:
    """The faulthandler dump written to `path` after `offset`: from its first line to the end."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(MAX_DUMP_BYTES)
    except OSError:
        return ""
    at = data.find(DUMP_MARK)
    return data[at:].decode(errors="replace") if at >= 0 else ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _alive(pid: int) -> bool:
    """Neither gone nor a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _no_core(pid: int) -> None:
    """No core file for the SIGABRT: a rank may hold many GB (a process may lower another's limit of its own user)."""
    try:
        _, hard = resource.prlimit(pid, resource.RLIMIT_CORE)
        resource.prlimit(pid, resource.RLIMIT_CORE, (0, hard))
    except (OSError, ValueError):
        pass
