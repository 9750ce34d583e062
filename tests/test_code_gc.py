"""`danlu gc` removes exactly the code snapshots no attempt names and that were not used lately, their manifests
and the file contents no other snapshot holds; it follows no symlink, keeps other users' entries, and a dry run
removes nothing."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from danlu_helpers import danlu

from launcher.code.gc import collect, collect_all
from launcher.code.objects import hash_file
from launcher.code.snapshot import Limits, Snapshot, freeze_workdir
from launcher.code.store_layout import CodeLayout
from launcher.errors import UserError
from launcher.store import NewRun, Store

OLD = time.time() - 3 * 86400  # three days ago: older than gc's default of one day


def _new_run(run_dir: Path, idx: int, code: Optional[str], job_code: Optional[str] = None) -> NewRun:
    return NewRun(
        run=f"sw/{idx}",
        idx=idx,
        overrides=[],
        config={},
        run_dir=str(run_dir),
        workdir="/tmp",
        git_commit=None,
        git_dirty=None,
        partition=None,
        nodes=1,
        cluster_kind="local",
        script="",
        command="python train.py",
        code=code,
        job_code=job_code,
    )


@dataclass
class World:
    runs_dir: Path
    workdir: Path
    store_path: Path
    kept: Snapshot  # named by the latest attempt of run 0
    gone: Snapshot  # named by nothing, last used three days ago
    young: Snapshot  # named by nothing, built just now
    earlier: Snapshot  # named only by run 0's first attempt
    job_side: Snapshot  # named only as an attempt's job_code

    @property
    def layout(self) -> CodeLayout:
        return CodeLayout.of_runs_dir(self.runs_dir)

    def object_of(self, snap: Snapshot, rel: str) -> Path:
        return self.layout.object(hash_file(snap.tree / rel), False)


def _freeze(world_root: Path, workdir: Path, files: Dict[str, str]) -> Snapshot:
    for rel, text in files.items():
        (workdir / rel).write_text(text)
    return freeze_workdir(world_root / "runs", workdir, Limits())


def _age(path: Path) -> None:
    os.utime(path, (OLD, OLD), follow_symlinks=False)


def _every_path(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def world(tmp_path: Path) -> World:
    """Five snapshots of one workdir (outside git) in one code store; every object and every tree but one aged."""
    workdir = tmp_path / "work"
    (workdir / "data").mkdir(parents=True)
    (workdir / "data" / "big.bin").write_text("data the snapshots link to, never copy")
    (workdir / ".danluignore").write_text("data/\n")
    snaps = {
        "earlier": _freeze(tmp_path, workdir, {"shared.py": "SHARED = 1\n", "train.py": "print('earlier')\n"}),
        "job_side": _freeze(tmp_path, workdir, {"train.py": "print('job side')\n"}),
        "kept": _freeze(tmp_path, workdir, {"train.py": "print('kept')\n"}),
        "gone": _freeze(tmp_path, workdir, {"train.py": "print('gone')\n", "only_gone.py": "X = 2\n"}),
    }
    (workdir / "only_gone.py").unlink()
    snaps["young"] = _freeze(tmp_path, workdir, {"train.py": "print('young')\n"})
    layout = CodeLayout.of_runs_dir(tmp_path / "runs")
    for obj in (layout.root / "objects").rglob("*"):
        _age(obj)
    for name in ("earlier", "job_side", "kept", "gone"):
        _age(snaps[name].tree)
    store_path = tmp_path / "home" / "store.sqlite"
    store = Store(store_path)
    run_dir = tmp_path / "runs" / "sw" / "0"
    first = _new_run(run_dir, 0, snaps["earlier"].key, snaps["job_side"].key)
    elsewhere = _new_run(tmp_path / "missing-runs" / "sw" / "1", 1, None)  # a runs dir that is gone: skipped
    assert store.create_sweep("sw", "e", "local", [], [], str(run_dir.parent), [first, elsewhere])
    assert store.add_attempts([_new_run(run_dir, 0, snaps["kept"].key)], [], {"sw/0": 1})
    return World(tmp_path / "runs", workdir, store_path, **snaps)


def test_gc_removes_only_the_unnamed_old_snapshot_and_its_own_objects(world: World) -> None:
    gone_only = [world.object_of(world.gone, "train.py"), world.object_of(world.gone, "only_gone.py")]
    shared = world.object_of(world.gone, "shared.py")
    assert all(p.exists() for p in gone_only + [shared])
    store = Store(world.store_path)
    [done] = collect_all(store.run_dirs(), store.code_keys(), 1.0, dry_run=False)
    assert done.as_json() == {
        "store": str(world.layout.root),
        "trees_removed": 1,
        "objects_removed": 2,
        "bytes_freed": sum(len(t) for t in ("print('gone')\n", "X = 2\n")),
        "trees_kept": 4,
    }
    assert not world.gone.tree.exists() and not world.layout.manifest(world.gone.key).exists()
    assert not any(p.exists() for p in gone_only)
    assert shared.exists()
    for snap in (world.kept, world.young, world.earlier, world.job_side):
        assert snap.tree.is_dir() and world.layout.manifest(snap.key).exists()
    assert (world.kept.tree / "train.py").read_text() == "print('kept')\n"
    assert (world.kept.tree / "shared.py").read_text() == "SHARED = 1\n"
    assert (world.kept.tree / "data" / "big.bin").read_text().startswith("data the snapshots")


def test_gc_never_follows_a_snapshots_link_back_to_the_workdir(world: World) -> None:
    link = world.gone.tree / "data"
    assert link.is_symlink() and Path(os.readlink(link)) == world.workdir / "data"
    collect(world.layout, set(), 1.0, dry_run=False)
    assert not world.gone.tree.exists()
    assert (world.workdir / "data" / "big.bin").read_text().startswith("data the snapshots")


def test_dry_run_removes_nothing_and_counts_what_gc_then_removes(world: World) -> None:
    before = _every_path(world.layout.root)
    store = Store(world.store_path)
    [dry] = collect_all(store.run_dirs(), store.code_keys(), 1.0, dry_run=True)
    assert _every_path(world.layout.root) == before
    [real] = collect_all(store.run_dirs(), store.code_keys(), 1.0, dry_run=False)
    assert dry == real and real.trees_removed == 1


def test_a_young_unnamed_snapshot_stays_until_older_than_allows(world: World) -> None:
    done = collect(world.layout, set(), 1.0, dry_run=False)
    assert done.trees_removed == 4 and world.young.tree.is_dir()
    assert (world.young.tree / "train.py").read_text() == "print('young')\n"
    done = collect(world.layout, set(), 0.0, dry_run=False, now=time.time() + 1)
    assert (done.trees_removed, done.objects_removed, done.trees_kept) == (1, 3, 0)
    assert not world.young.tree.exists()
    assert not [p for p in world.layout.objects_dir.rglob("*") if p.is_file()]


def test_other_users_snapshots_and_objects_are_kept(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _every_path(world.layout.root)
    layout = world.layout
    other = os.stat(layout.root).st_uid + 4242
    monkeypatch.setattr(os, "getuid", lambda: other)
    done = collect(layout, set(), 0.0, dry_run=False, now=time.time() + 1)
    assert (done.trees_removed, done.objects_removed, done.trees_kept) == (0, 0, 5)
    assert _every_path(layout.root) == before


def test_day_old_leftovers_in_tmp_go(world: World) -> None:
    tmp = world.layout.tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "object-1-abc").write_text("half an object")
    (tmp / "tree-1-abc" / "pkg").mkdir(parents=True)
    (tmp / "tree-1-abc" / "pkg" / "link").symlink_to(world.workdir / "data")
    (tmp / "object-2-new").write_text("being written now")
    for p in (tmp / "object-1-abc", tmp / "tree-1-abc"):
        _age(p)
    collect(world.layout, set(), 1.0, dry_run=False)
    assert sorted(p.name for p in tmp.iterdir()) == ["object-2-new"]
    assert (world.workdir / "data" / "big.bin").exists()


def test_negative_days_are_bad_input(world: World) -> None:
    with pytest.raises(UserError, match="negative"):
        collect_all([], set(), -1.0, dry_run=True)


def test_the_command_prints_a_line_per_code_store_and_json(world: World) -> None:
    env = {"DANLU_STORE": str(world.store_path), "DANLU_HOME": str(world.store_path.parent), "NO_COLOR": "1"}
    before = _every_path(world.layout.root)
    dry = danlu("gc", "--dry-run", env=env, check=True)
    assert dry.stdout == f"{world.layout.root}: would remove 1 snapshot, 2 files (20 B); kept 4 snapshots in use\n"
    assert "dry run: nothing removed" in dry.stderr
    assert _every_path(world.layout.root) == before
    done = danlu("gc", "--json", env=env, check=True)
    assert json.loads(done.stdout) == [
        {
            "store": str(world.layout.root),
            "trees_removed": 1,
            "objects_removed": 2,
            "bytes_freed": 20,
            "trees_kept": 4,
        }
    ]
    assert not world.gone.tree.exists()
    again = danlu("gc", "--older-than", "1", env=env, check=True)
    assert again.stdout == f"{world.layout.root}: removed 0 snapshots, 0 files (0 B); kept 4 snapshots in use\n"
    bad = danlu("gc", "--older-than", "-2", env=env)
    assert bad.returncode == 2 and "error: --older-than -2 is negative" in bad.stderr
