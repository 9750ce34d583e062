"""Where the code store of a runs_dir keeps its files (launcher/code/): the one place that spells those paths.

<runs_dir>/.danlu-code/                  CodeLayout: frozen code, shared by every run under runs_dir
    objects/<aa>/<sha256>[.x]            each file's content once (read-only; .x: executable)
    trees/<key>/                         one snapshot: hard links to objects, as the workdir had them
    manifests/<key>.json                 what a snapshot holds: files, commit, uncommitted paths
    cache/<workdir id>.json              size/mtime -> sha256 of a workdir's files (no re-reading)
    tmp/                                 files and trees being written (renamed into place once whole)

`danlu gc` (launcher/code/gc.py) removes the snapshots no run names any more, and the objects no tree links.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CodeLayout:
    """The code store of one runs_dir (launcher/code/): content-addressed objects, snapshot trees, manifests."""

    root: Path

    @staticmethod
    def of_runs_dir(runs_dir: Path) -> "CodeLayout":
        """`.danlu-code` in a runs_dir of one's own (or one not made yet); in a runs_dir shared with others (sticky,
        owned by someone else), a store of one's own beside theirs: `.danlu-code-<uid>`."""
        try:
            owner = runs_dir.stat().st_uid
        except OSError:
            owner = os.getuid()
        return CodeLayout(runs_dir / (".danlu-code" if owner == os.getuid() else f".danlu-code-{os.getuid()}"))

    @staticmethod
    def of_run_dir(run_dir: Path) -> "CodeLayout":
        """The code store of a run's runs_dir (a run dir is <runs_dir>/<sweep>/<index>)."""
        return CodeLayout.of_runs_dir(run_dir.parent.parent)

    @property
    def objects_dir(self) -> Path:
        return self.root / "objects"

    def object(self, sha256: str, executable: bool) -> Path:
        return Path(self.object_path(sha256, executable))

    def object_path(self, sha256: str, executable: bool) -> str:
        """object() as a string: snapshots ask it for thousands of files, and a string costs a tenth of a Path."""
        return f"{self.root}/objects/{sha256[:2]}/{sha256}{'.x' if executable else ''}"

    @property
    def trees_dir(self) -> Path:
        return self.root / "trees"

    def tree(self, key: str) -> Path:
        return self.trees_dir / key

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    def manifest(self, key: str) -> Path:
        return self.manifests_dir / f"{key}.json"

    def cache(self, source: Path) -> Path:
        """The stat cache of one source folder, named by a hash of its path."""
        return self.root / "cache" / (hashlib.sha256(str(source).encode()).hexdigest()[:20] + ".json")

    @property
    def tmp_dir(self) -> Path:
        """Where files and trees are written before their rename into place (the same file system)."""
        return self.root / "tmp"
