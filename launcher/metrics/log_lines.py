"""Metrics from the `step=N key=value ...` lines programs print (the tiny examples do; many training loops
print their own alike): rank 0's view, every restart of every attempt in order, with the time each line was
written (the log's time index, launcher/layout.time_index)."""

from __future__ import annotations

import bisect
import re
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple

from ..layout import RANK0_LOGS, RestartLayout, time_index

if TYPE_CHECKING:
    from .cache import Columns

# counters and identities that share a step line, not metrics
NOT_METRICS = frozenset({"step", "rank", "local_rank", "node_rank", "world_size", "pid", "epoch"})
_UNITS = (b"ms", b"s", b"%")  # a value printed with its unit: step_time=0.366s, usage=12%

Points = Dict[str, List[Tuple[int, float, Optional[float]]]]


def rank0_logs(restart: RestartLayout) -> List[Path]:
    """The logs that may hold rank 0's lines, the likeliest first (no file-system call: the reader tries them)."""
    return [restart.root / name for name in RANK0_LOGS]


def rank0_log(restart: RestartLayout) -> Optional[Path]:
    """The log holding rank 0's lines: its own (one task per rank, or the launcher's per-rank copy), else the
    launcher's log of node 0."""
    for path in rank0_logs(restart):
        if path.exists():
            return path
    return None


def _line_times(log: Path) -> Tuple[List[int], List[float]]:
    offsets: List[int] = []
    stamps: List[float] = []
    try:
        text = time_index(log).read_text()
    except OSError:
        return offsets, stamps
    for ln in text.splitlines():
        parts = ln.split()
        if len(parts) == 2:
            try:
                offsets.append(int(parts[0]))
                stamps.append(float(parts[1]))
            except ValueError:
                continue
    return offsets, stamps


def _number(value: bytes) -> Optional[float]:
    try:
        return float(value)
    except ValueError:
        pass
    for unit in _UNITS:
        if value.endswith(unit):
            value = value[: -len(unit)]
            break
    try:
        return float(value)
    except ValueError:
        return None


def _step_line(line: bytes) -> Optional[Tuple[int, List[Tuple[str, float]]]]:
    """(step, [(metric, value)]) of a `step=N key=value ...` line of rank 0 (a launcher's `[default0]:` prefix
    allowed); None for any other line (`pretrain step=3/20`, another rank's line, no metric in it)."""
    step: Optional[int] = None
    found: List[Tuple[str, float]] = []
    for token in line.split():
        key, eq, value = token.rpartition(b"=")
        if not eq:
            continue
        if b":" in key:  # [default0]:step=3
            key = key.rsplit(b":", 1)[1]
        name = key.decode(errors="replace")
        if name == "step":
            if not value.isdigit():
                return None
            step = int(value)
        elif name == "rank":
            if value != b"0":
                return None
        elif name not in NOT_METRICS and (name[:1].isalpha() or name[:1] == "_"):
            number = _number(value.rstrip(b",;"))
            if number is not None:
                found.append((name, number))
    return (step, found) if step is not None and found else None


class _Shape:
    """The layout of a step line already read (its tokens in order): a regex that reads the next lines laid out
    alike in one match, with exactly _step_line's result (a log repeats one layout thousands of times)."""

    def __init__(self, line: bytes) -> None:
        parts: List[bytes] = []
        self.names: List[str] = []  # the metric of each captured group after the step
        for token in line.split():
            key, eq, value = token.rpartition(b"=")
            if not eq:
                parts.append(rb"[^\s=]+")  # a word: any word, never a key=value token
                continue
            prefix = b""
            if b":" in key:
                prefix, key = key.rsplit(b":", 1)
                prefix += b":"
            name = key.decode(errors="replace")
            head = re.escape(prefix + key + b"=")
            if name == "step":
                parts.append(head + rb"(\d+)")
            elif name == "rank":
                parts.append(head + rb"0")
            elif name not in NOT_METRICS and (name[:1].isalpha() or name[:1] == "_"):
                # the value without the trailing ,; and unit _number strips (lazy: the unit is left outside)
                parts.append(head + rb"(\S*?)(?:ms|s|%)?[,;]*")
                self.names.append(name)
            else:
                parts.append(re.escape(token.rpartition(b"=")[0] + b"=") + rb"\S*")
        steps = sum(1 for p in parts if p.endswith(rb"(\d+)"))
        # (a line with two step tokens is left to _step_line: the last one counts there)
        self.regex = re.compile(rb"\s*" + rb"\s+".join(parts) + rb"\s*" if steps == 1 else rb"(?!)")

    def read(self, line: bytes) -> Optional[Tuple[int, List[Tuple[str, float]]]]:
        m = self.regex.fullmatch(line)
        if m is None:
            return None
        groups = m.groups()
        try:
            return int(groups[0]), [(name, float(value)) for name, value in zip(self.names, groups[1:], strict=True)]
        except ValueError:  # a value that is no number on this line: the token reader decides
            return _step_line(line)


def parse(data: bytes, start: int = 0, times: Tuple[List[int], List[float]] = ([], [])) -> Points:
    """The metrics of every step line in `data` (the bytes of a log from offset `start`)."""
    out: Points = {}
    offsets, stamps = times
    shapes: List[_Shape] = []  # the layouts seen, the latest first
    pos = 0
    for line in data.split(b"\n"):
        here = pos
        pos += len(line) + 1
        if b"step=" not in line:
            continue
        got = None
        for shape in shapes:
            got = shape.read(line)
            if got is not None:
                break
        if got is None:
            got = _step_line(line)
            if got is None:
                continue
            shapes.insert(0, _Shape(line))
            del shapes[8:]
        step, found = got
        when: Optional[float] = None
        if offsets:
            i = bisect.bisect_right(offsets, start + here) - 1
            when = stamps[i] if i >= 0 else stamps[0]
        for name, value in found:
            pts = out.get(name)
            if pts is None:
                pts = out[name] = []
            pts.append((step, value, when))
    return out


def read_log(log: Path) -> Points:
    try:
        data = log.read_bytes()
    except OSError:
        return {}
    return parse(data, 0, _line_times(log))


def merge(parts: Iterable[Points]) -> Points:
    """The points of several logs, in the order given (earlier restarts first)."""
    out: Points = {}
    for p in parts:
        for name, pts in p.items():
            out.setdefault(name, []).extend(pts)
    return out


def tail_step(log: "str | Path", nbytes: int = 4096) -> Optional[Tuple[int, Dict[str, float]]]:
    """The last step line in the last `nbytes` of a log, cheaply (`danlu status` for running runs)."""
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - nbytes))
            data = f.read()
    except OSError:
        return None
    for line in reversed(data.split(b"\n")):
        if b"step=" not in line:
            continue
        got = _step_line(line)
        if got:
            return got[0], dict(got[1])
    return None


def run_points(attempts: Iterable[Iterable[RestartLayout]]) -> Points:
    """Rank 0's step lines of every restart of every attempt, earliest first."""
    logs = [rank0_log(r) for restarts in attempts for r in restarts]
    return merge(read_log(p) for p in logs if p is not None)


def run_columns(attempts: Iterable[Iterable[RestartLayout]]) -> "Columns":
    """run_points as columns, each log read through the cache (metrics/cache.py): only what it gained since the
    last read is parsed."""
    from .cache import read_columns

    out: Columns = {}
    for restarts in attempts:
        for r in restarts:
            log = rank0_log(r)
            if log is None:
                continue

            def parse_log(data: bytes, start: int, log: Path = log) -> Points:
                return parse(data, start, _line_times(log))

            for name, (steps, values, times) in read_columns(log, parse_log).items():
                if name in out:
                    s, v, t = out[name]
                    s.extend(steps)
                    v.extend(values)
                    t.extend(times)
                else:
                    out[name] = (steps, values, times)
    return out
