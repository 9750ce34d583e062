"""Section 6: the code snapshot. danlu's freeze of a workdir (launcher/code/snapshot.freeze_workdir) beside the
anchors' ways to copy the same code: `git archive HEAD | tar -x`, `rsync -a --files-from=<(git ls-files)`, and
`rsync --link-dest` (the closest to danlu's: unchanged files hard-linked to the previous copy). No Slurm: files on
this machine's disk, the fixture of bench/code_fixture.py.

Each case is timed as the median of `reps` (wall clock), with the bytes it wrote (the sizes of the files new on
disk: a hard link writes none) and the files and links it created.
"""

from __future__ import annotations

import os
import shutil
import stat
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from bench import code_fixture
from bench.code_fixture import FULL, RepoSize
from bench.results import Results
from bench.session import Session
from bench.shell import log
from launcher.code.snapshot import Limits, freeze_workdir, human
from launcher.code.store_layout import CodeLayout

FIRST, SAME, CHANGED = "first snapshot", "second submit, nothing changed", "second submit, one file changed"
CASES = (FIRST, SAME, CHANGED)
TOOLS = ("danlu", "git archive", "rsync", "rsync --link-dest")
State = Dict[str, Tuple[int, int, bool]]  # path -> (inode, size, regular file)


@dataclass
class Cell:
    """One case of one tool: its samples (seconds, bytes written, files and links created, bytes of file contents)."""

    samples: List[Tuple[float, int, int, int]] = field(default_factory=list)
    note: str = ""

    def median(self, k: int) -> float:
        return float(statistics.median(s[k] for s in self.samples))

    @property
    def seconds(self) -> float:
        return self.median(0)


def _state(root: Path) -> State:
    """Every file and symlink below `root` (not followed): its inode, size and whether it is a regular file."""
    out: State = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                out[os.path.relpath(path, root)] = (st.st_ino, st.st_size, stat.S_ISREG(st.st_mode))
    return out


def _written(before: State, after: State, shared: State) -> Tuple[int, int, int]:
    """(bytes of the files new on disk, files and links created or replaced, those bytes below objects/). A file
    of `before` or `shared` (the copy a new one links into) is not new: a hard link to it writes no bytes."""
    old = {v[0] for v in before.values()} | {v[0] for v in shared.values()}
    created = [p for p, v in after.items() if before.get(p, (None,))[0] != v[0]]
    new = {v[0]: (p, v[1]) for p, v in after.items() if v[2] and v[0] not in old}
    content = sum(size for p, size in new.values() if p.startswith("objects" + os.sep))
    return sum(size for _, size in new.values()), len(created), content


def _measure(cell: Cell, root: Path, act: Callable[[], None], linked: Optional[Path] = None) -> None:
    """Time `act` once, and what it wrote below `root` (`linked`: the copy it may hard-link files of)."""
    before = _state(root) if root.exists() else {}
    shared = _state(linked) if linked is not None else {}
    t0 = time.perf_counter()
    act()
    wall = time.perf_counter() - t0
    cell.samples.append((wall, *_written(before, _state(root), shared)))


def _run(script: str, *args: str) -> None:
    subprocess.run(["bash", "-c", "set -o pipefail; " + script, "bench", *args], check=True, capture_output=True)


GIT_ARCHIVE = 'git -C "$1" archive HEAD | tar -x -C "$2"'
RSYNC = 'rsync -a --files-from=<(git -C "$1" ls-files --recurse-submodules) "$1/" "$2/"'
LINK_DEST = 'rsync -a --link-dest="$3" --files-from=<(git -C "$1" ls-files --recurse-submodules) "$1/" "$2/"'


class Bench:
    """The cases on one fixture: `reps` of each, the tools interleaved (a load spike hits every tool alike), every
    copy in a folder of `scratch`. A second submit with one change edits one file once per repetition: each tool
    then copies one changed file since its previous copy."""

    def __init__(self, scratch: Path, repo: Path, reps: int) -> None:
        self.scratch, self.repo, self.reps = scratch, repo, reps
        self.cells: Dict[Tuple[str, str], Cell] = {(c, t): Cell() for c in CASES for t in TOOLS}
        self.edited_size = 0
        self.runs = scratch / "danlu"  # the code store's runs_dir
        self.synced = scratch / "rsync"  # rsync's copy, synced again by a second submit
        self.previous = scratch / "link-0"  # the copy the next `rsync --link-dest` links into
        self.copies = 0
        self.cells[FIRST, "rsync --link-dest"].note = "as rsync: no previous copy to link to"
        self.cells[CHANGED, "git archive"].note = "HEAD only: the uncommitted change is not in it"

    def run(self) -> None:
        tools = {"danlu": self._danlu, "git archive": self._archive, "rsync": self._rsync}
        tools["rsync --link-dest"] = self._link_dest
        for case in CASES:
            log(f"6. the code snapshot: {case}, {self.reps} times, {', '.join(TOOLS)} in turn")
            for i in range(self.reps):
                if case == CHANGED:
                    self.edited_size = code_fixture.edit(self.repo, f"repetition {i}")
                for tool, measure_one in tools.items():
                    measure_one(case, self.cells[case, tool])
            if case == FIRST:
                _run(RSYNC, str(self.repo), str(self.previous))
        for done in (self.runs, self.synced, self.previous):
            shutil.rmtree(done)

    def _danlu(self, case: str, cell: Cell) -> None:
        if case == FIRST and self.runs.exists():
            shutil.rmtree(self.runs)  # a fresh store each time
        runs, repo = self.runs, self.repo

        def act() -> None:
            freeze_workdir(runs, repo, Limits())

        _measure(cell, runs / ".danlu-code", act)

    def _archive(self, case: str, cell: Cell) -> None:
        dest = self.scratch / "archive"  # a new copy each time: git archive shares nothing
        dest.mkdir()
        _measure(cell, dest, partial(_run, GIT_ARCHIVE, str(self.repo), str(dest)))
        shutil.rmtree(dest)

    def _rsync(self, case: str, cell: Cell) -> None:
        if case == FIRST and self.synced.exists():
            shutil.rmtree(self.synced)  # a new copy each time; a second submit syncs the same one (rsync's delta)
        _measure(cell, self.synced, partial(_run, RSYNC, str(self.repo), str(self.synced)))

    def _link_dest(self, case: str, cell: Cell) -> None:
        """A new copy each time, its unchanged files hard links into the previous copy."""
        if case == FIRST:
            return
        self.copies += 1
        dest = self.scratch / f"link-{self.copies}"
        args = (str(self.repo), str(dest), str(self.previous))
        _measure(cell, dest, partial(_run, LINK_DEST, *args), self.previous)
        shutil.rmtree(self.previous)
        self.previous = dest


def _cell_text(cell: Cell, danlu: Optional[Cell]) -> str:
    if not cell.samples:
        return cell.note or "-"
    text = f"{cell.seconds:.3f} s, {human(int(cell.median(1)))}, {int(cell.median(2)):,} files/links"
    if danlu is not None and cell.seconds > 0:
        text += f"; danlu/this {danlu.seconds / cell.seconds:.2f}x time"
        if cell.median(1) > 0:
            text += f", {danlu.median(1) / cell.median(1):.2f}x bytes"
    return text + (f" ({cell.note})" if cell.note else "")


def table(bench: Bench) -> str:
    """The markdown table: a row per case, a column per tool (danlu's ratio to each anchor in its cell)."""
    out = ["| case | " + " | ".join(TOOLS) + " |", "|---" * (len(TOOLS) + 1) + "|"]
    for case in CASES:
        danlu = bench.cells[case, "danlu"]
        cells = [_cell_text(danlu, None) + f" (file contents {human(int(danlu.median(3)))})"]
        cells += [_cell_text(bench.cells[case, t], danlu) for t in TOOLS[1:]]
        out.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _freeze_specs(runs_dir: Path, repo: Path, runs: int) -> float:
    """Seconds to freeze a sweep of `runs` runs of one workdir as a submit does: freeze_specs, then Frozen.write."""
    from launcher.spec.options import ClusterSpec, RunSpec
    from launcher.submit.freeze import freeze_specs

    specs = [
        RunSpec(workdir=str(repo), args={"seed": i}, cluster=ClusterSpec(runs_dir=str(runs_dir))) for i in range(runs)
    ]
    t0 = time.perf_counter()
    freeze_specs(specs).write()
    return time.perf_counter() - t0


def _sweep_text(scratch: Path, repo: Path, runs: int) -> str:
    """A sweep's freezing: once per distinct workdir, so about one snapshot's cost, first and again."""
    runs_dir = scratch / "sweep"
    first = _freeze_specs(runs_dir, repo, runs)
    again = [(_freeze_specs(runs_dir, repo, 1), _freeze_specs(runs_dir, repo, runs)) for _ in range(3)]
    trees = len(list(CodeLayout.of_runs_dir(runs_dir).trees_dir.iterdir()))
    shutil.rmtree(runs_dir)
    one, many = (statistics.median(x[k] for x in again) for k in (0, 1))
    return (
        f"A {runs:,}-run sweep of this workdir, frozen as a submit freezes it (launcher.submit.freeze.freeze_specs, "
        f"then Frozen.write): {first:.3f} s into a fresh store ({trees} snapshot written); submitted again unchanged, "
        f"{many:.3f} s, against {one:.3f} s for one run (medians of 3)."
    )


Goal = Tuple[str, str, bool]  # (goal, measured, met)


def _goals(bench: Bench) -> List[Goal]:
    """The section's goals: a second submit adds <= 0.1 s and writes <= 1 file's bytes; a first snapshot is no
    slower than the faster anchor."""
    cells = bench.cells
    faster = min(cells[FIRST, "git archive"].seconds, cells[FIRST, "rsync"].seconds)
    first = cells[FIRST, "danlu"].seconds
    goals = [(f"{FIRST}: <= the faster anchor", f"{first:.3f} s vs {faster:.3f} s", first <= faster)]
    for case in (SAME, CHANGED):
        c = cells[case, "danlu"]
        goals.append((f"{case}: <= 0.1 s added", f"{c.seconds:.3f} s", c.seconds <= 0.1))
    one = bench.edited_size
    c = cells[CHANGED, "danlu"]
    goals += [
        (f"{CHANGED}: file contents written <= 1 file ({human(one)})", human(int(c.median(3))), c.median(3) <= one),
        (
            f"{CHANGED}: all bytes written (contents, manifest, stat cache) <= 1 file ({human(one)})",
            human(int(c.median(1))),
            c.median(1) <= one,
        ),
    ]
    return goals


def _ratios(res: Results, bench: Bench) -> None:
    cells = bench.cells
    for case, anchor in ((FIRST, "git archive"), (FIRST, "rsync"), (SAME, "rsync"), (CHANGED, "rsync --link-dest")):
        ours, theirs = cells[case, "danlu"], cells[case, anchor]
        res.ratio(
            "6",
            f"{case}: danlu {ours.seconds:.3f} s / {anchor} {theirs.seconds:.3f} s = "
            f"{ours.seconds / theirs.seconds:.2f}x (medians); bytes written {human(int(ours.median(1)))} vs "
            f"{human(int(theirs.median(1)))}",
        )


def measure(ses: Session, res: Results, size: RepoSize = FULL, reps: int = 5, sweep_runs: int = 1000) -> Bench:
    """Section 6 on a fixture of `size`: every case `reps` times; the table, goals and ratios into `res`."""
    log(f"6. the code snapshot: building the fixture ({size.files:,} files)")
    scratch = ses.scratch("code")
    repo = code_fixture.build(scratch, size)
    bench = Bench(scratch, repo, reps)
    bench.run()
    text = [f"The fixture: {size.describe()}.", "", table(bench), ""]
    if sweep_runs:
        text += [_sweep_text(scratch, repo, sweep_runs), ""]
    text += ["Goals:", ""]
    for goal, measured, met in _goals(bench):
        res.target(f"(6) {goal}", measured, met)
        text.append(f"- {goal}: measured {measured}: " + ("met" if met else "**MISSED**"))
    _ratios(res, bench)
    res.blocks.append(
        ("Section 6: the code snapshot, danlu beside the anchors (local disk, no Slurm)", "\n".join(text))
    )
    for line in text:
        if line:
            log(line)
    for case in CASES:
        res.figures[f"code_{case}"] = bench.cells[case, "danlu"].seconds
    shutil.rmtree(scratch)
    return bench
