"""Sweep and run names by how they begin, for shell completion: read-only, on a connection of their own that
never makes, migrates or waits long for the store. What cannot be read gives no names."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType
from typing import List, Optional, Type

from .connection import default_path


def _like(prefix: str) -> str:
    """A LIKE pattern (ESCAPE '\\') of the names that begin with `prefix`."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class Names:
    """`with Names() as names:` the store's names, or none while there is no store."""

    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = path or default_path()
        self._db: Optional[sqlite3.Connection] = None

    def __enter__(self) -> Names:
        if self.path.is_file():
            try:
                self._db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=1)
            except sqlite3.Error:
                self._db = None
        return self

    def __exit__(
        self, kind: Optional[Type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _column(self, sql: str, prefix: str, limit: int) -> List[str]:
        if self._db is None:
            return []
        try:
            return [r[0] for r in self._db.execute(sql, (_like(prefix), limit)).fetchall()]
        except sqlite3.Error:
            return []

    def sweeps(self, prefix: str, limit: int) -> List[str]:
        """The sweeps whose name begins with `prefix`, newest first, at most `limit`."""
        return self._column(
            "SELECT sweep FROM sweeps WHERE sweep LIKE ? ESCAPE '\\' ORDER BY created DESC LIMIT ?", prefix, limit
        )

    def runs(self, prefix: str, limit: int) -> List[str]:
        """The runs whose id begins with `prefix`, newest sweep first and in their order, at most `limit`."""
        return self._column(
            "SELECT run FROM runs WHERE run LIKE ? ESCAPE '\\' ORDER BY created DESC, idx LIMIT ?", prefix, limit
        )
