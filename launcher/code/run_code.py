"""What a planned run knows of its frozen code: the snapshot, the PYTHONPATH into it, the frozen danlu job side."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import FrozenSet, Optional, Tuple


@dataclass(frozen=True)
class RunCode:
    key: Optional[str] = None  # the workdir's snapshot; None when the run uses its workdir as it is (code.freeze)
    tree: Optional[str] = None
    files: FrozenSet[str] = frozenset()  # the frozen files, relative to the workdir
    python_path: Tuple[str, ...] = ()
    danlu_key: Optional[str] = None  # danlu's own job side, frozen (Slurm runs)
    danlu_tree: Optional[str] = None
    commit: Optional[str] = None  # what git said of the workdir as it was frozen
    dirty: Optional[bool] = None

    def in_tree(self, value: str) -> str:
        """A relative path naming a frozen file, as the frozen copy's path; any other value as it is."""
        if self.tree is None or not value or os.path.isabs(value) or "\n" in value:
            return value
        norm = os.path.normpath(value)
        if norm in self.files:
            return os.path.join(self.tree, norm)
        return value


NO_CODE = RunCode()
