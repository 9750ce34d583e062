"""Where a command's time goes: with DANLU_TIMINGS=FILE, each phase's wall time is added up and written to FILE as
one JSON object when the command ends (bench/submit_command.py reads it: the submit command's breakdown).

    DANLU_TIMINGS=/tmp/t.json danlu submit experiment=tiny_dpo && cat /tmp/t.json

`entered` is the wall clock (time.time()) when danlu's main() began: what came before it is the interpreter's
start and the import of the CLI. Without DANLU_TIMINGS, `phase` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Dict, Iterator

_TOTALS: Dict[str, float] = {}
_COUNTS: Dict[str, int] = {}
_ENTERED: list[float] = []


def enabled() -> bool:
    return bool(os.environ.get("DANLU_TIMINGS"))


def entered() -> None:
    """main() has begun: start the record (once per process)."""
    if enabled() and not _ENTERED:
        import atexit

        _ENTERED.append(time.time())
        atexit.register(_write)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the wall time of the block to `name` (blocks may repeat: one sbatch call per job)."""
    if not _ENTERED:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _TOTALS[name] = _TOTALS.get(name, 0.0) + time.perf_counter() - t0
        _COUNTS[name] = _COUNTS.get(name, 0) + 1


def _write() -> None:
    import json

    record = {"entered": _ENTERED[0], "exited": time.time(), "phases": _TOTALS, "counts": _COUNTS}
    with open(os.environ["DANLU_TIMINGS"], "w") as f:
        json.dump(record, f)
