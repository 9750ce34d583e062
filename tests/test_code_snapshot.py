"""Which files a snapshot freezes, what it costs, and what it refuses: real git repositories in tmp_path, no Slurm."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Dict

import pytest

from launcher.code import listing
from launcher.code.objects import IGNORED, LIVE
from launcher.code.snapshot import Limits, freeze_workdir, read_manifest, write_snapshot
from launcher.code.store_layout import CodeLayout
from launcher.errors import UserError


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", "-c", "protocol.file.allow=always", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def _write(root: Path, files: Dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A project with tracked, untracked, ignored, executable and symlinked files and a submodule."""
    sub = tmp_path / "sub-origin"
    sub.mkdir()
    _write(sub, {"lib.py": "X = 1\n"})
    _git(sub, "init", "-q")
    _git(sub, "add", "-A")
    _git(sub, "commit", "-qm", "sub")
    root = tmp_path / "project"
    root.mkdir()
    _write(root, {"train.py": "print(1)\n", "pkg/m.py": "A = 1\n", ".gitignore": "data/\n*.ckpt\n", "gone.py": "x\n"})
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "link.py").symlink_to("train.py")
    _git(root, "init", "-q")
    _git(root, "submodule", "-q", "add", str(sub), "third_party/sub")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "first")
    _write(root, {"new.py": "B = 2\n", "data/big.bin": "0" * 100, "model.ckpt": "w", "pkg/__pycache__/m.pyc": "c"})
    (root / "gone.py").unlink()
    return root


def _manifest(runs: Path, key: str) -> Dict[str, list]:
    data = read_manifest(runs, key)
    assert data is not None
    return {e[0]: e for e in data["entries"]}  # type: ignore[union-attr]


def test_tracked_and_untracked_files_are_frozen_and_ignored_ones_linked_back(repo: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    snap = freeze_workdir(runs, repo, Limits())
    assert snap.files == {
        ".gitignore",
        ".gitmodules",
        "train.py",
        "pkg/m.py",
        "run.sh",
        "new.py",
        "third_party/sub/lib.py",
    }
    entries = _manifest(runs, snap.key)
    assert entries["link.py"][1:3] == ["l", "train.py"] and entries["run.sh"][1] == "x"
    assert entries["data"][1] == IGNORED and entries["model.ckpt"][1] == IGNORED
    assert "gone.py" not in entries and not any("__pycache__" in p for p in entries)
    assert snap.dirty is True and snap.commit is not None
    assert sorted(read_manifest(runs, snap.key)["changed"]) == ["gone.py", "new.py"]  # type: ignore[index]
    tree = snap.tree
    assert (tree / "train.py").read_text() == "print(1)\n" and os.readlink(tree / "link.py") == "train.py"
    assert stat.S_IMODE((tree / "train.py").stat().st_mode) == 0o444
    assert stat.S_IMODE((tree / "run.sh").stat().st_mode) == 0o555
    assert (tree / "data").resolve() == (repo / "data").resolve()  # a link back to the live data


def test_unchanged_code_is_one_snapshot_and_one_change_costs_one_file(repo: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = freeze_workdir(runs, repo, Limits())
    (repo / "outputs-of-a-run.ckpt").write_text("ignored output")  # ignored: no new snapshot
    again = freeze_workdir(runs, repo, Limits())
    assert again.key == first.key and again.bytes_written == 0 and not again.built
    (repo / "pkg" / "m.py").write_text("A = 22\n")
    changed = freeze_workdir(runs, repo, Limits())
    assert changed.key != first.key and changed.built and changed.bytes_written == len("A = 22\n")
    # unchanged files are the same objects: hard links into both trees
    assert (first.tree / "train.py").stat().st_ino == (changed.tree / "train.py").stat().st_ino
    assert (first.tree / "pkg" / "m.py").read_text() == "A = 1\n"


def test_a_dry_run_computes_the_key_and_writes_nothing(repo: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    planned = freeze_workdir(runs, repo, Limits(), dry_run=True)
    assert not runs.exists()
    written = freeze_workdir(runs, repo, Limits())
    assert planned.key == written.key


def test_a_file_changed_between_the_plan_and_the_write_is_refused(repo: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    planned = freeze_workdir(runs, repo, Limits(), dry_run=True)
    (repo / "train.py").write_text("print('edited meanwhile')\n")
    with pytest.raises(UserError, match="train.py changed while danlu froze the code"):
        write_snapshot(planned)
    assert not planned.tree.exists()


def test_danluignore_keeps_tracked_and_untracked_files_out(repo: Path, tmp_path: Path) -> None:
    (repo / ".danluignore").write_text("pkg/\nnew.py\n")
    snap = freeze_workdir(tmp_path / "runs", repo, Limits())
    assert "pkg/m.py" not in snap.files and "new.py" not in snap.files and "train.py" in snap.files


def test_a_large_file_is_left_out_with_a_warning_and_a_large_snapshot_refused(repo: Path, tmp_path: Path) -> None:
    (repo / "weights.npy").write_bytes(b"\0" * (2 << 20))  # untracked, not ignored: 2 MB
    snap = freeze_workdir(tmp_path / "runs", repo, Limits(max_file_mb=1))
    assert "weights.npy" not in snap.files
    assert snap.left_out == [("weights.npy", 2 << 20)]
    (warning,) = snap.warnings()
    assert "weights.npy (2.0 MB)" in warning and "code.max_file_mb" in warning and ".danluignore" in warning
    assert _manifest(tmp_path / "runs", snap.key)["weights.npy"][1] == LIVE
    with pytest.raises(UserError, match=r"over code.max_total_mb=1; largest: weights.npy \(2.0 MB\)") as refused:
        freeze_workdir(tmp_path / "runs2", repo, Limits(max_file_mb=10, max_total_mb=1))
    assert ".danluignore" in refused.value.hint and not (tmp_path / "runs2").exists()


def test_outside_git_every_file_but_caches_and_outputs(tmp_path: Path) -> None:
    work = tmp_path / "plain"
    _write(
        work,
        {
            "train.py": "1",
            "conf/a.yaml": "a: 1",
            ".venv/lib/x.py": "v",
            "wandb/run/log": "w",
            "pkg/__pycache__/m.pyc": "c",
            "notes/skip.txt": "s",
            ".danluignore": "notes/\n",
        },
    )
    snap = freeze_workdir(tmp_path / "runs", work, Limits())
    assert snap.files == {"train.py", "conf/a.yaml", ".danluignore"} and snap.commit is None and snap.dirty is None


def test_without_git_on_path_the_workdir_is_walked_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "plain"
    _write(
        work,
        {"train.py": "1", "conf/a.yaml": "a", ".venv/x.py": "v", "notes/skip.txt": "s", ".danluignore": "notes/\n"},
    )
    with_git = listing.list_workdir(work, [])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    walked = listing.list_workdir(work, [])
    assert sorted(walked.files) == sorted(with_git.files) == [".danluignore", "conf/a.yaml", "train.py"]


def test_the_runs_folder_inside_the_workdir_is_never_frozen(repo: Path) -> None:
    runs = repo / "runs"
    freeze_workdir(runs, repo, Limits(), excluded=["runs"])  # a first snapshot fills runs/.danlu-code
    snap = freeze_workdir(runs, repo, Limits(), excluded=["runs"])
    assert not any(f.startswith("runs/") for f in snap.files)


def test_a_runs_folder_someone_else_owns_gets_a_store_per_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "shared-runs"
    runs.mkdir()
    assert CodeLayout.of_runs_dir(runs).root == runs / ".danlu-code"
    other = runs.stat().st_uid + 1000
    monkeypatch.setattr(os, "getuid", lambda: other)
    assert CodeLayout.of_runs_dir(runs).root == runs / f".danlu-code-{other}"


@pytest.mark.parametrize("where", ["git", "outside git", "without git"])
def test_a_workdir_with_too_many_files_is_refused_as_they_are_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A home or data folder given as the workdir by mistake: refused once past code.max_files, nothing written."""
    work = tmp_path / "home"
    _write(work, {f"d{i // 100}/f{i}.txt": "x" for i in range(350)})
    if where == "git":
        _git(work, "init", "-q")
    if where == "without git":
        monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match=r"holds more than code.max_files=300 files to freeze") as refused:
        freeze_workdir(tmp_path / "runs", work, Limits(max_files=300))
    assert ".danluignore" in refused.value.hint and not (tmp_path / "runs").exists()
    assert freeze_workdir(tmp_path / "runs", work, Limits(max_files=400), dry_run=True).files
