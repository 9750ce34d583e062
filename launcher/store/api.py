"""`Store`: the run store as danlu uses it, opened at the newest schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .connection import default_path, unreadable_as_user_error
from .migrate import migrate
from .reads import Reads
from .writes import Writes


class Store(Writes, Reads):
    """The store at `path` (default: DANLU_STORE, else store.sqlite in danlu's data folder), made if missing,
    migrated forward if older, only its owner's."""

    def __init__(self, path: Optional[Path] = None) -> None:
        super().__init__(Path(path) if path else default_path())
        with unreadable_as_user_error(self.path):
            migrate(self)
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
