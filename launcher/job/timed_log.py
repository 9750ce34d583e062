"""Logs written with their times (launcher/layout.time_index), and torch elastic's per-rank files followed live.

torch elastic copies each rank's output into the launcher's own (`--tee`) only while it is not stopping: after a
SIGTERM the rest of a rank's lines — its checkpoint message, its traceback — are only in the per-rank files it
writes under `--log_dir`. The agent follows those files while the node runs and appends them to rank<R>.log and
rank<R>.err as they grow, so every rank's every line is in the run's logs, with its time.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Tuple

from ..layout import time_index


class TimedLog:
    """An append-only log file and its time index."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "ab", buffering=0)
        self._index = open(time_index(path), "a", buffering=1)
        self._offset = self._file.tell()
        self._last = ""

    def write(self, data: bytes) -> None:
        if not data:
            return
        now = f"{time.time():.2f}"
        if now != self._last:
            self._index.write(f"{self._offset} {now}\n")
            self._last = now
        self._file.write(data)
        self._offset += len(data)

    def close(self) -> None:
        self._file.close()
        self._index.close()

    def __enter__(self) -> "TimedLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RankFiles:
    """Follows `<dir>/<id>/attempt_<n>/<local rank>/std{out,err}.log` (torch elastic's layout) into the rank logs."""

    def __init__(self, root: Path, dest: Callable[[int, bool], Path], first_rank: int, every: float = 0.25) -> None:
        self._root, self._dest, self._first, self._every = root, dest, first_rank, every
        self._read: Dict[Path, int] = {}
        self._out: Dict[Tuple[int, bool], TimedLog] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self._poll(final=False)

    def _poll(self, final: bool) -> None:
        with self._lock:
            if not self._root.is_dir():
                return
            for f in sorted(self._root.glob("*/attempt_*/*/std*.log")):
                if not f.parent.name.isdigit():
                    continue
                try:
                    with open(f, "rb") as fh:
                        fh.seek(self._read.get(f, 0))
                        data = fh.read()
                except OSError:
                    continue
                end = len(data) if final else data.rfind(b"\n") + 1  # whole lines while the rank runs
                if end <= 0:
                    continue
                self._read[f] = self._read.get(f, 0) + end
                key = (self._first + int(f.parent.name), f.name.startswith("stderr"))
                if key not in self._out:
                    self._out[key] = TimedLog(self._dest(*key))
                self._out[key].write(data[:end])

    def close(self) -> None:
        """The node has ended: copy what is left (a last line without newline too), then remove the files."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._poll(final=True)
        for log in self._out.values():
            log.close()
        shutil.rmtree(self._root, ignore_errors=True)
