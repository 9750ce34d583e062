"""The repository section 6 freezes (bench/code_freeze.py): a git repo shaped like a research codebase, with what
a snapshot must leave out (ignored data and environment) and what it must keep (a submodule, a symlink, an
executable, untracked code)."""

from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple

from launcher.words import counted

MB = 1 << 20
EDITED = "pkg000/mod_0000.py"  # the one small file a second submit changes
UNTRACKED_CODE = "notes_untracked.py"  # untracked, not ignored: frozen
UNTRACKED_BIG = "scratch_dump.bin"  # untracked, not ignored, over code.max_file_mb: left out, linked back


@dataclass(frozen=True)
class RepoSize:
    files: int  # committed text files (.py and .yaml), spread over `folders`
    folders: int
    text_bytes: int  # their total
    big_mb: Tuple[int, ...]  # committed binary files, MB each
    data_bytes: int  # the ignored data/ folder: sparse files, no disk writes
    untracked_mb: int  # the untracked file git does not ignore, over code.max_file_mb (10)

    def describe(self) -> str:
        total = (self.text_bytes + sum(self.big_mb) * MB) / MB
        return (
            f"a git repo of {self.files + len(self.big_mb) + 2:,} committed files ({total:.0f} MB: {self.files:,} "
            f"small .py/.yaml files in {self.folders} folders, {counted(len(self.big_mb), 'binary', 'binaries')} of "
            f"{'/'.join(map(str, self.big_mb))} MB, an executable script, a symlink), a submodule of 3 files, an "
            f"ignored data/ of {self.data_bytes / (1 << 30):.1f} GB (sparse files made with os.truncate: no disk "
            f"writes), an ignored .venv/ of 4 files, an untracked {UNTRACKED_CODE} (frozen by danlu, not by "
            f"`git archive`) and an untracked, not ignored {UNTRACKED_BIG} of {self.untracked_mb} MB (over "
            "code.max_file_mb=10: danlu leaves it out and links it back; the anchors, which copy what git tracks, "
            "leave it out too)"
        )


FULL = RepoSize(2000, 100, 39 * MB, (1, 2, 3, 5), 2 << 30, 20)
TINY = RepoSize(40, 4, 200 << 10, (1,), 64 * MB, 11)


def _git(args: Sequence[str], cwd: Path) -> None:
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-c", "init.defaultBranch=main"]
    subprocess.run(["git", *ident, *args], cwd=cwd, check=True, capture_output=True)


def _text(rng: random.Random, n: int, header: str) -> str:
    """`n` characters of source-like text: a header line, then lines of 99 characters."""
    body = rng.randbytes(n // 2 + 1).hex()[: max(0, n - len(header))]
    return header + "\n".join(body[i : i + 99] for i in range(0, len(body), 100)) + "\n"


def _write_code(repo: Path, size: RepoSize, rng: random.Random) -> None:
    each = size.text_bytes // size.files
    for i in range(size.files):
        folder = repo / f"pkg{i % size.folders:03d}"
        folder.mkdir(exist_ok=True)
        name = f"mod_{i:04d}.py" if i % 4 else f"conf_{i:04d}.yaml"
        if i == 0:
            name = Path(EDITED).name
        header = f"# file {i}\n" if name.endswith(".py") else f"file: {i}\n"
        (folder / name).write_text(_text(rng, each, header))
    (repo / "weights").mkdir()
    for k, mb in enumerate(size.big_mb):
        (repo / "weights" / f"table_{k}.bin").write_bytes(rng.randbytes(mb * MB))
    (repo / "run.sh").write_text('#!/bin/sh\nexec python -m pkg000.mod_0000 "$@"\n')
    (repo / "run.sh").chmod(0o755)
    os.symlink("pkg000", repo / "latest")
    (repo / ".gitignore").write_text("data/\n.venv/\n")


def _write_ignored(repo: Path, size: RepoSize) -> None:
    """data/ of sparse files (os.truncate writes no blocks), .venv/ with a few files."""
    (repo / "data").mkdir()
    parts = 4
    for k in range(parts):
        with open(repo / "data" / f"shard_{k}.bin", "wb") as f:
            os.truncate(f.fileno(), size.data_bytes // parts)
    venv = repo / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "bin" / "activate").write_text("# activate\n")
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")
    (venv / "lib.txt").write_text("site-packages would be here\n")


def _submodule(root: Path, repo: Path) -> None:
    sub = root / "subrepo"
    sub.mkdir()
    for name in ("__init__.py", "ops.py", "README.md"):
        (sub / name).write_text(f"# {name} of the submodule\n")
    _git(["init", "-q"], sub)
    _git(["add", "-A"], sub)
    _git(["commit", "-q", "-m", "submodule"], sub)
    _git(["-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "sub"], repo)


def build(root: Path, size: RepoSize, seed: int = 31) -> Path:
    """The repository under `root` (root/repo), committed; the untracked files written after the commit."""
    rng = random.Random(seed)
    repo = root / "repo"
    repo.mkdir(parents=True)
    _git(["init", "-q"], repo)
    _write_code(repo, size, rng)
    _submodule(root, repo)
    _git(["add", "-A"], repo)
    _git(["commit", "-q", "-m", "fixture"], repo)
    _write_ignored(repo, size)
    (repo / UNTRACKED_CODE).write_text("# an experiment not committed yet\nLR = 3e-4\n")
    with open(repo / UNTRACKED_BIG, "wb") as f:
        for _ in range(size.untracked_mb):
            f.write(rng.randbytes(MB))
    return repo


def edit(repo: Path, tag: str) -> int:
    """Change the one small file a second submit changes; its size after."""
    path = repo / EDITED
    with open(path, "a") as f:
        f.write(f"# edited: {tag}\n")
    return path.stat().st_size
