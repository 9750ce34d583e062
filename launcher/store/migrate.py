"""A store moved forward to the newest schema when it is opened, a copy of it at its old schema kept beside it."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Optional

from ..errors import UserError
from .connection import Connection
from .output_dir import stored_output_dir
from .schema import MIGRATIONS, NEWEST, newer_error, schema_of


def _keep_copy(store: Connection, version: int) -> Path:
    """Copy the store at schema `version` to store.sqlite.v<version>.bak, replacing an older copy of that schema.
    Called under the migration's lock: no one writes the store meanwhile. SQLite's backup API reads the store as
    its transactions left it; the copy is written under another name and renamed, so it is never torn."""
    target = store.path.with_name(f"{store.path.name}.v{version}.bak")
    partial = target.with_name(target.name + ".partial")
    try:
        partial.unlink(missing_ok=True)
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # the owner's only, as the store
        # a connection of its own: SQLite refuses to back up from one in a write transaction
        source = store.open_file(store.path)
        try:
            copy = store.open_file(partial)
            try:
                source.backup(copy)
            finally:
                copy.close()
        finally:
            source.close()
        os.replace(partial, target)
    except (OSError, sqlite3.Error) as e:
        partial.unlink(missing_ok=True)
        raise UserError(
            f"the run store {str(store.path)!r} was not upgraded from schema {version}: "
            f"a copy of it could not be written to {str(target)!r}: {e}",
            "make room next to the store (or fix its folder's permissions) and run danlu again",
        ) from None
    return target


def migrate(store: Connection) -> None:
    """Apply every migration the store lacks, in one transaction; a store that had data is copied first."""
    with store.use() as db:
        version = schema_of(db)
        if version == NEWEST:
            return
        db.create_function("danlu_output_dir", 3, stored_output_dir)
        kept: Optional[Path] = None
        with store.tx():
            version = schema_of(db)  # re-read under the lock
            if version > NEWEST:  # upgraded meanwhile by a newer danlu
                raise newer_error(store.path, version)
            if 0 < version < NEWEST:  # a fresh store (0) has nothing to keep
                kept = _keep_copy(store, version)
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")
        if kept is not None:
            print(
                f"note: the run store was upgraded from schema {version} to {NEWEST}; the old one is kept at {kept}",
                file=sys.stderr,
                flush=True,
            )
