"""What has been read of each log, kept between reports: a log only grows (each start of a run writes its own
files), so a report reads only the bytes written since the last one. One file per log under danlu's cache folder
(paths.cache_dir), keyed by the log's path; used while the log is the same file (inode) and no shorter than what
was read. Best effort: a cache that cannot be read or written is ignored, never an error."""

from __future__ import annotations

import hashlib
import marshal
import math
import os
from array import array
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..paths import cache_dir

VERSION = 1
# metric -> steps (q), values (d), times (d, NaN: unknown)
Columns = Dict[str, Tuple["array[int]", "array[float]", "array[float]"]]


def cache_file(log: Path) -> Path:
    key = hashlib.sha1(str(Path(log).resolve()).encode(errors="surrogateescape")).hexdigest()
    return cache_dir() / "metrics" / f"{key}.marshal"


def _load(path: Path, ino: int, size: int) -> Tuple[int, Columns]:
    try:
        raw = marshal.loads(path.read_bytes())
        if raw.get("v") != VERSION or raw["ino"] != ino or raw["offset"] > size:
            return 0, {}
        cols: Columns = {}
        for name, (steps, values, times) in raw["cols"].items():
            cols[name] = (array("q", steps), array("d", values), array("d", times))
        return int(raw["offset"]), cols
    except (OSError, ValueError, EOFError, KeyError, TypeError):
        return 0, {}


def _save(path: Path, ino: int, offset: int, cols: Columns) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = marshal.dumps(
            {
                "v": VERSION,
                "ino": ino,
                "offset": offset,
                "cols": {n: (s.tobytes(), v.tobytes(), t.tobytes()) for n, (s, v, t) in cols.items()},
            }
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        pass


Parser = Callable[[bytes, int], Dict[str, List[Tuple[int, float, Optional[float]]]]]


def read_columns(log: Path, parse: Parser) -> Columns:
    """Every metric of `log` as columns: what the cache holds, plus `parse(new_bytes, offset)` of the complete
    lines written since (a line still being written is left for the next read)."""
    try:
        st = os.stat(log)
    except OSError:
        return {}
    path = cache_file(log)
    offset, cols = _load(path, st.st_ino, st.st_size)
    if offset < st.st_size:
        try:
            with open(log, "rb") as f:
                f.seek(offset)
                new = f.read(st.st_size - offset)
        except OSError:
            return cols
        end = new.rfind(b"\n") + 1  # complete lines only
        if end:
            for name, pts in parse(new[:end], offset).items():
                steps, values, times = cols.setdefault(name, (array("q"), array("d"), array("d")))
                for step, value, when in pts:
                    steps.append(step)
                    values.append(value)
                    times.append(math.nan if when is None else when)
            _save(path, st.st_ino, offset + end, cols)
    return cols
