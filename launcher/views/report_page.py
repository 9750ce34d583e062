"""`danlu report --html`: the report as one page that opens in any browser, offline."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from ..words import counted


def write_page(path: Path, report: Dict[str, Any], sweep: str, rows: List[Any]) -> None:
    """The report as one self-contained HTML page at `path` (written whole or not at all), with each run's log tail."""
    from plotly.offline import get_plotlyjs

    from ..layout import RunLayout
    from ..metrics.log_lines import rank0_log
    from ..views.report_html import render_html

    logs = {}
    for r in rows:
        restarts = RunLayout(Path(r["run_dir"])).attempt(int(r["attempt"])).restarts()
        log = rank0_log(restarts[-1]) if restarts else None
        logs[r["run"]] = _tail(log, LOG_TAIL_LINES) if log else ""
    page = render_html(report, sweep, get_plotlyjs(), logs, time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    metrics = len({n for r in report["runs"] for n in r["series"]})
    print(
        f"wrote {path}: {counted(len(rows), 'run')}, {counted(metrics, 'metric')}; it opens in any browser, offline",
        file=sys.stderr,
    )


LOG_TAIL_LINES = 80


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
