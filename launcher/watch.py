"""Live table for `danlu status --watch` on a terminal (rich; plain when NO_COLOR or not a tty)."""

from __future__ import annotations

import os
from typing import Any, Dict, List

from .status import COLUMNS, sweep_counts, table_rows

_console: Any = None

COLORS = {"R": "green", "CD": "bright_green", "PD": "yellow", "F": "red", "TO": "red", "OOM": "red", "NF": "red",
          "CA": "magenta", "PR": "cyan"}


def render_live(items: List[Dict[str, Any]]) -> None:
    from rich.console import Console, Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    global _console
    if _console is None:
        _console = Console(no_color=bool(os.environ.get("NO_COLOR")))
    parts: List[Any] = []
    for sweep, counts in sweep_counts(items).items():
        total = sum(counts.values())
        done = sum(n for s, n in counts.items() if s in ("COMPLETED",))
        line = Table.grid(padding=(0, 1))
        line.add_row(Text(sweep, style="bold"), ProgressBar(total=total, completed=done, width=30),
                     Text(", ".join(f"{n} {s}" for s, n in counts.items())))
        parts.append(line)
    table = Table(box=None, header_style="bold")
    for c in COLUMNS:
        table.add_column(c)
    for row in table_rows(items):
        table.add_row(*row[:4], Text(row[4], style=COLORS.get(row[4], "")), *row[5:])
    parts.append(table)
    _console.clear()
    _console.print(Group(*parts))
