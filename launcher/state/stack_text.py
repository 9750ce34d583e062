"""The stacks file of a hung node (job/stacks.py) read back, and the one line that says where its ranks were.

A stacks file holds one section per rank, each opened by a header `rank R (pid P) via WAY` (WAY: `py-spy`,
`py-spy --native`, `faulthandler`, or `none: why`) and followed by what the tool printed:

    py-spy dump --full-filenames (--native):
    Thread 4242 (idle): "MainThread"
        PyThread_acquire_lock_timed (libpython3.11.so.1.0)
        all_reduce (/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py:2806)
        train_step (/home/ana/proj/train.py:412)

    faulthandler (PYTHONFAULTHANDLER=1, on SIGABRT):
    Current thread 0x00007f0a2c23b80 (most recent call first):
      File "/venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py", line 2806 in all_reduce
      File "/home/ana/proj/train.py", line 412 in train_step

Both list the innermost frame first. py-spy's native frames (`--native`) name a library, not a file and line:
they are kept with line 0 and never name where a rank is. Standard library only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

# a native function of torch's distributed backends: where a rank waits for its peers
_COLLECTIVE = re.compile(r"c10d::|nccl|gloo::", re.IGNORECASE)
HEADER = re.compile(r"^rank (\d+) \(pid (\d+)\) via (\S+(?: --native)?)(?:: (.*))?$")
_FH_THREAD = re.compile(r"^(Current thread|Thread) (0x[0-9a-fA-F]+)(?: \[(.*)\])? \(most recent call first\):\s*$")
_FH_STACK = re.compile(r"^Stack \(most recent call first\):\s*$")
_FH_FRAME = re.compile(r'^  File "(.*)", line (\d+|\?\?\?) in (.*)$')
_SPY_THREAD = re.compile(r'^Thread (0x[0-9a-fA-F]+|\d+) \(([^)]*)\)(?:: "(.*)")?\s*$')
_SPY_FRAME = re.compile(r"^    (\S.*) \(([^()]*)\)\s*$")
_LIBRARY = ("site-packages", "dist-packages")
_PYTHON_SOURCE = (".py", ".pyx", ".pyw")


@dataclass(frozen=True)
class Frame:
    """One frame of a stack: a Python function at a file's line, or a native one (line 0, `file` its library)."""

    function: str
    file: str
    line: int

    @property
    def python(self) -> bool:
        return self.line > 0

    def where(self) -> str:
        """`train.py:412`: the file's name, not its folders."""
        return f"{os.path.basename(self.file)}:{self.line}"


@dataclass
class ThreadStack:
    """One thread of a rank, its innermost frame first."""

    name: str
    current: bool = False  # faulthandler's "Current thread": the one that took the signal
    frames: List[Frame] = field(default_factory=list)

    def has_module_frame(self) -> bool:
        """Runs a script's top level: the main thread (threads start in threading's `_bootstrap`)."""
        return any(f.function == "<module>" and os.path.basename(f.file) != "threading.py" for f in self.frames)


@dataclass(frozen=True)
class Section:
    """One rank's part of a stacks file."""

    rank: int
    pid: int
    way: str  # how its stack was read: py-spy, py-spy --native, faulthandler, none
    note: str  # why there is none
    body: List[str]


def parse_sections(text: str) -> List[Section]:
    """The ranks' sections of a stacks file, in file order (lines before the first header are ignored)."""
    out: List[Section] = []
    for line in text.splitlines():
        found = HEADER.match(line)
        if found:
            rank, pid, way, note = found.groups()
            out.append(Section(int(rank), int(pid), way, note or "", []))
        elif out:
            out[-1].body.append(line)
    return out


def parse_threads(lines: Sequence[str]) -> List[ThreadStack]:
    """Every thread of one tool's output, py-spy's or faulthandler's format."""
    threads: List[ThreadStack] = []
    for line in lines:
        started = _thread_start(line)
        if started is not None:
            threads.append(started)
            continue
        frame = _frame(line)
        if frame is not None and threads:
            threads[-1].frames.append(frame)
    return threads


def _thread_start(line: str) -> Optional[ThreadStack]:
    found = _FH_THREAD.match(line)
    if found:
        return ThreadStack(found.group(3) or found.group(2), current=found.group(1) == "Current thread")
    if _FH_STACK.match(line):
        return ThreadStack("", current=True)
    found = _SPY_THREAD.match(line)
    if found:
        return ThreadStack(found.group(3) or found.group(1))
    return None


def _frame(line: str) -> Optional[Frame]:
    found = _FH_FRAME.match(line)
    if found:
        number = found.group(2)
        return Frame(found.group(3), found.group(1), int(number) if number.isdigit() else 0)
    found = _SPY_FRAME.match(line)
    if found:
        place, _, number = found.group(2).rpartition(":")
        if number.isdigit() and (place.endswith(_PYTHON_SOURCE) or place.startswith("<")):
            return Frame(found.group(1), place, int(number))
        return Frame(found.group(1), found.group(2), 0)  # native: a library, or a C/C++ file with debug info
    return None


def main_thread(threads: Sequence[ThreadStack]) -> Optional[ThreadStack]:
    """The thread that runs the program: py-spy's MainThread, else the one at a script's top level, else the one
    that took faulthandler's signal, else the first."""
    for pick in (
        lambda t: t.name == "MainThread",
        ThreadStack.has_module_frame,
        lambda t: t.current,
    ):
        found = next((t for t in threads if pick(t)), None)
        if found is not None:
            return found
    return threads[0] if threads else None


def parse_stacks(text: str) -> Dict[int, List[Frame]]:
    """rank -> the frames of its main thread, innermost first (empty: no stack was read)."""
    out: Dict[int, List[Frame]] = {}
    for section in parse_sections(text):
        main = main_thread(parse_threads(section.body))
        out[section.rank] = main.frames if main is not None else []
    return out


def program_files(roots: Sequence[str]) -> Callable[[str], bool]:
    """Is a frame's file the program's: below one of `roots` (the workdir, the run's frozen code) and not an installed
    package (a virtual environment inside the workdir is not the program). A relative path is the program's."""
    prefixes = tuple({os.path.join(os.path.normpath(p), "") for r in roots if r for p in (r, os.path.realpath(r))})

    def check(path: str) -> bool:
        if not path or path.startswith("<") or any(part in _LIBRARY for part in path.split(os.sep)):
            return False
        return not os.path.isabs(path) or os.path.normpath(path).startswith(prefixes)

    return check


@dataclass(frozen=True)
class RankPlace:
    """Where one rank is: its innermost Python function at the program's innermost line, and the collective's native
    function below that frame (`c10d::Reducer::finalize_backward`: "" none, None: the native frames were not read)."""

    function: str
    line: str  # `train.py:412`
    collective: Optional[str]


def rank_place(frames: Sequence[Frame], program_file: Callable[[str], bool]) -> Optional[RankPlace]:
    """The place of a rank's main thread: the program's innermost line, or without a frame of the program the
    innermost function's own line. None: no Python frame."""
    python = [f for f in frames if f.python]
    if not python:
        return None
    own = next((f for f in python if program_file(f.file)), python[0])
    return RankPlace(python[0].function, own.where(), _collective_below(frames, python[0]))


def _collective_below(frames: Sequence[Frame], python: Frame) -> Optional[str]:
    """The native function of a collective called from the innermost Python frame, "" for none, None where the
    native frames were not read."""
    if f"{os.sep}distributed{os.sep}" in python.file:
        return ""  # torch.distributed's own call (all_reduce, barrier) names the collective already
    if not any(not f.python and not f.file.endswith(_PYTHON_SOURCE) for f in frames):
        return None
    below = frames[: frames.index(python)]
    return next((f.function for f in below if _COLLECTIVE.search(f.function)), "").partition("(")[0]


def place_names(places: Dict[int, Optional[RankPlace]]) -> Dict[int, Optional[str]]:
    """rank -> `all_reduce (train.py:412)`. A collective's native function names the place where it was read. Ranks
    at the same Python place whose native frames were not read take the name their peers there agree on: a tracer
    reads the native frames of some ranks and not of others, and one wait must not read as two."""
    agreed: Dict[Tuple[str, str], Set[str]] = {}
    for place in places.values():
        if place is not None and place.collective is not None:
            agreed.setdefault((place.function, place.line), set()).add(place.collective)
    out: Dict[int, Optional[str]] = {}
    for rank, place in places.items():
        if place is None:
            out[rank] = None
            continue
        known = agreed.get((place.function, place.line), set())
        shared = next(iter(known)) if len(known) == 1 else ""
        collective = place.collective if place.collective is not None else shared
        out[rank] = f"{collective or place.function} ({place.line})"
    return out


def hang_summary(stacks: Dict[int, List[Frame]], program_file: Callable[[str], bool]) -> str:
    """Where the ranks are, the most common place first: `3 of 4 ranks in all_reduce (train.py:412), rank 2 in
    DataLoader.__next__ (train.py:388)` ("" without ranks)."""
    names = place_names({rank: rank_place(stacks[rank], program_file) for rank in sorted(stacks)})
    groups: Dict[Optional[str], List[int]] = {}
    for rank, name in names.items():
        groups.setdefault(name, []).append(rank)
    # the ranks without a stack last, whatever their number
    order: List[Tuple[Optional[str], List[int]]] = sorted(
        groups.items(), key=lambda g: (g[0] is None, -len(g[1]), g[1][0])
    )
    return ", ".join(_group_words(place, ranks, len(stacks), i == 0) for i, (place, ranks) in enumerate(order))


def _group_words(place: Optional[str], ranks: List[int], total: int, first: bool) -> str:
    where = f"in {place}" if place is not None else "with no stack read"
    if len(ranks) == 1:
        return f"rank {ranks[0]} {where}"
    if first and place is not None:
        return f"{len(ranks)} of {total} ranks {where}"
    return f"ranks {','.join(map(str, ranks))} {where}"
