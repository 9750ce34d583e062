"""The run store: SQLite, one row per sweep, run and attempt.

Concurrent danlu processes are safe: every write is one short `BEGIN IMMEDIATE` transaction and a busy store
is waited for (not failed). The schema is versioned with `PRAGMA user_version` and migrated forward on open.

schema.py (tables, indexes, one migration per version), migrate.py (a store moved forward on open),
connection.py (where the store lives; WAL on a local disk, a rollback journal under a lock directory on a network
file system; transactions), views.py (the column views of the latest attempts, and rows that carry their view),
reads.py and writes.py (what danlu reads and writes), api.py (`Store`, all of it), names.py (names by prefix,
read-only, for shell completion), output_dir.py (a run's output dir as recorded). No SQL is written outside this
package.
"""

from .api import Store
from .connection import default_path, recorded_mode
from .names import Names
from .output_dir import output_dir_of, real_output_dir
from .reads import MANY_RUNS
from .schema import MIGRATIONS
from .views import BRIEF, FULL, TABLE, VIEWS, View, ViewRows, view_of
from .writes import NewRun

__all__ = [
    "BRIEF",
    "FULL",
    "MANY_RUNS",
    "MIGRATIONS",
    "TABLE",
    "VIEWS",
    "Names",
    "NewRun",
    "Store",
    "View",
    "ViewRows",
    "default_path",
    "output_dir_of",
    "real_output_dir",
    "recorded_mode",
    "view_of",
]
