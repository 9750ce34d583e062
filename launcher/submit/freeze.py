"""The code a submit's or a rerun's runs train: each workdir frozen once (launcher/code/), with danlu's job side.

A submit freezes every distinct (runs_dir, workdir) of its runs after the checks and before the plan, so the
commands name the frozen copies: their keys first (nothing written, as a dry run), then `Frozen.write` just before
the runs are recorded. A rerun uses each run's own snapshot unless it asks for the code as it is now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..backends import for_spec
from ..code.imports import python_path, site_dirs
from ..code.job_side import freeze_danlu
from ..code.listing import relative_inside
from ..code.run_code import NO_CODE, RunCode
from ..code.snapshot import Limits, Snapshot, freeze_workdir, read_manifest, write_snapshot
from ..code.store_layout import CodeLayout
from ..errors import UserError
from ..spec.file_checks import env_dir
from ..spec.options import RunSpec

Place = Tuple[str, str]  # (runs_dir, workdir), both resolved


@dataclass
class Frozen:
    """The frozen code of each place, and what freezing said (files left out for their size)."""

    codes: Dict[Place, RunCode] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    snapshots: Dict[Place, Snapshot] = field(default_factory=dict)
    danlu: Dict[str, Snapshot] = field(default_factory=dict)  # runs_dir -> danlu's job side

    def write(self) -> None:
        """Write every snapshot into its code store (what is there already is not written again)."""
        from .ownership import make_own_folder

        for snap in list(self.snapshots.values()) + list(self.danlu.values()):
            make_own_folder(snap.tree.parent.parent)  # the code store: mode 700, and refused if others could write it
            write_snapshot(snap)


def place_of(spec: RunSpec) -> Place:
    runs_dir = Path(spec.cluster.runs_dir).expanduser().resolve()
    return str(runs_dir), str(Path(spec.workdir).expanduser().resolve())


class Freezer:
    """Freezes each place once; danlu's job side once per runs_dir (Slurm runs only: a local run starts now).
    Nothing is written until `frozen.write()`."""

    def __init__(self) -> None:
        self.frozen = Frozen()

    def danlu(self, runs_dir: str) -> Snapshot:
        if runs_dir not in self.frozen.danlu:
            self.frozen.danlu[runs_dir] = freeze_danlu(Path(runs_dir), dry_run=True)
        return self.frozen.danlu[runs_dir]

    def workdir(self, spec: RunSpec) -> Optional[Snapshot]:
        """The place's snapshot, frozen now (None with code.freeze=false)."""
        where = place_of(spec)
        if not spec.code.freeze:
            return None
        if where not in self.frozen.snapshots:
            runs_dir, workdir = Path(where[0]), Path(where[1])
            inside = relative_inside(runs_dir, workdir)
            limits = Limits(spec.code.max_file_mb, spec.code.max_total_mb, spec.code.max_files)
            snap = freeze_workdir(runs_dir, workdir, limits, True, [inside] if inside else [])
            self.frozen.snapshots[where] = snap
            self.frozen.warnings += snap.warnings()
        return self.frozen.snapshots[where]

    def code(self, spec: RunSpec, snap: Optional[Snapshot]) -> RunCode:
        danlu = self.danlu(place_of(spec)[0]) if for_spec(spec).in_slurm else None
        run = code_of(spec, snap) if snap is not None else NO_CODE
        if danlu is None:
            return run
        return RunCode(**{**run.__dict__, "danlu_key": danlu.key, "danlu_tree": str(danlu.tree)})


def code_of(spec: RunSpec, snap: Snapshot) -> RunCode:
    """A run's view of a snapshot: its tree, its files, and the PYTHONPATH into it for the run's environment."""
    sites = site_dirs(env_dir(spec))
    return RunCode(
        key=snap.key,
        tree=str(snap.tree),
        files=snap.files,
        python_path=tuple(python_path(snap.tree, snap.workdir, sites)),
        commit=snap.commit,
        dirty=snap.dirty,
    )


def freeze_specs(specs: Sequence[RunSpec]) -> Frozen:
    """Each distinct place of `specs`, frozen: keys now, written by `Frozen.write`."""
    freezer = Freezer()
    for spec in specs:
        where = place_of(spec)
        if where not in freezer.frozen.codes:
            freezer.frozen.codes[where] = freezer.code(spec, freezer.workdir(spec))
    return freezer.frozen


def stored_snapshot(runs_dir: str, key: str, run: str) -> Snapshot:
    """A run's own snapshot, read back from the code store; refused when `danlu gc` removed it."""
    manifest = read_manifest(Path(runs_dir), key)
    tree = CodeLayout.of_runs_dir(Path(runs_dir)).tree(key)
    if manifest is None or not tree.is_dir():
        raise UserError(
            f"the frozen code of {run} (snapshot {key[:12]}) is no longer in {runs_dir}",
            "rerun it with the workdir's code as it is now: danlu rerun RUN --code current",
        )
    raw = manifest.get("entries")
    entries: List[Any] = raw if isinstance(raw, list) else []
    files = frozenset(str(e[0]) for e in entries if e[1] in ("f", "x"))
    total = sum(int(e[3]) for e in entries if e[1] in ("f", "x"))
    commit = manifest.get("commit")
    dirty = manifest.get("dirty")
    return Snapshot(
        key,
        tree,
        Path(str(manifest.get("workdir"))),
        str(commit) if commit else None,
        bool(dirty) if dirty is not None else None,
        files,
        total,
    )


def rerun_codes(
    specs: Sequence[RunSpec], rows: Sequence[Any], current: bool
) -> Tuple[List[RunCode], List[str], Frozen]:
    """The code of each rerun: the run's own snapshot (its latest attempt's), or the workdir as it is now with
    `current` (and for a run that has none). Notes say which runs train which code; `Frozen.write` writes what is
    new."""
    freezer = Freezer()
    codes: List[RunCode] = []
    notes: List[str] = []
    for spec, row in zip(specs, rows, strict=True):
        key = row["code"] if "code" in row.keys() else None
        snap: Optional[Snapshot]
        if not spec.code.freeze:
            snap = None
        elif key and not current:
            snap = stored_snapshot(place_of(spec)[0], key, row["run"])
        else:
            snap = freezer.workdir(spec)
            if not current:
                notes.append(f"{row['run']} has no frozen code: it trains the workdir's code as it is now")
        codes.append(freezer.code(spec, snap))
    if current:
        keys = sorted({c.key[:12] for c in codes if c.key})
        notes.append(f"--code current: the workdir's code as it is now (snapshot {', '.join(keys) or 'none'})")
    return codes, notes + freezer.frozen.warnings, freezer.frozen
