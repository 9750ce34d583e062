"""`danlu status --watch`: a live table, refreshed every few seconds with ONE sacct + ONE squeue call.

On a terminal: rich, redrawn in place, with a progress bar and per-state counts per sweep (no colors
under NO_COLOR). Not a terminal (a pipe, a log file): the plain table, printed once per refresh.
Watching named sweeps/runs ends by itself once all of them have ended; otherwise Ctrl-C ends it (exit 0).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..metrics.live import Prefetch, add_progress
from ..state.names import SHORT, TERMINAL
from ..state.reconcile import refresh
from .table import columns, filter_items, items, render_plain, select, table_rows

if TYPE_CHECKING:
    from rich.console import Group

SweepBars = List[Tuple[str, Dict[str, int], int, int, int]]  # (sweep, runs per state, total, completed, failed)
Snapshot = Tuple[List[Dict[str, Any]], SweepBars, List[str], Optional[str]]  # shown, bars, notes, metric

COLORS = {
    "R": "green",
    "CD": "bright_green",
    "PD": "yellow",
    "F": "red",
    "TO": "red",
    "OOM": "red",
    "NF": "red",
    "BF": "red",
    "DL": "red",
    "CA": "magenta",
    "PR": "cyan",
    "RQ": "cyan",
    "?": "red",
}
BAR_WIDTH = 24


@dataclass(frozen=True)
class WatchOptions:
    """What `danlu status --watch` is asked to show, and how often."""

    names: Tuple[str, ...] = ()  # sweeps and runs to watch (none: every run); watching ends when they have all ended
    show_all: bool = False  # finished runs too
    states: Optional[str] = None  # only these states, comma-separated
    interval: float = 3.0  # seconds between refreshes
    no_metrics: bool = False  # leave out running runs' latest step and metric


def sweep_progress(
    all_items: List[Dict[str, Any]], sweeps: List[str]
) -> List[Tuple[str, Dict[str, int], int, int, int]]:
    """(sweep, counts by state, total, completed, ended otherwise) for each sweep, over ALL its runs
    (finished ones too, so the bar measures the whole sweep even when only active runs are listed)."""
    out = []
    for sweep in sweeps:
        counts: Dict[str, int] = {}
        bad = 0
        for it in all_items:
            if it["sweep"] == sweep:
                counts[it["state"]] = counts.get(it["state"], 0) + 1
                # a run Slurm may still requeue (PREEMPTED, NODE_FAIL, TIMEOUT, not final) has not ended
                bad += it["state"] in TERMINAL and it["state"] != "COMPLETED" and bool(it.get("final", True))
        total = sum(counts.values())
        completed = counts.get("COMPLETED", 0)
        out.append((sweep, counts, total, completed, bad))
    return out


def bar_text(total: int, completed: int, bad: int, width: int = BAR_WIDTH, ascii_only: bool = False) -> str:
    """'[#####xx---------]'-style bar: completed, ended otherwise (failed, cancelled, ...), still to go."""
    if total <= 0:
        return ""
    ok = round(width * completed / total)
    ko = min(width - ok, round(width * (completed + bad) / total) - ok)
    full, failed, rest = ("#", "x", "-") if ascii_only else ("█", "▓", "░")
    return full * ok + failed * ko + rest * (width - ok - ko)


def counts_text(counts: Dict[str, int]) -> str:
    order = list(SHORT)
    return ", ".join(
        f"{n} {SHORT.get(s, s)}"
        for s, n in sorted(counts.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    )


def _snapshot(store: Any, opts: WatchOptions) -> Snapshot:
    """One refresh: the store reconciled with Slurm (one sacct + one squeue for the active runs)."""
    selected = select(store, opts.names)
    early = None if opts.no_metrics else Prefetch(selected)  # log tails read while squeue and sacct answer
    rows, notes = refresh(store, selected)
    everything = items(rows)
    shown = filter_items(everything, opts.names, opts.show_all, opts.states)
    metric = None if opts.no_metrics else add_progress(shown, early)  # running runs' step and latest value of `metric`
    sweeps = list(dict.fromkeys(it["sweep"] for it in shown))
    return shown, sweep_progress(everything, sweeps), notes, metric


def _done(shown: List[Dict[str, Any]], opts: WatchOptions) -> bool:
    return bool(opts.names) and bool(shown) and all(it["final"] for it in shown)


def _header(opts: WatchOptions) -> str:
    what = " ".join(opts.names) if opts.names else ("all runs" if opts.show_all else "active runs")
    end = "ends when they have all ended" if opts.names else "Ctrl-C to quit"
    return f"danlu status --watch: {what} · every {opts.interval:g} s · {time.strftime('%H:%M:%S')} · {end}"


def render_rich(
    shown: List[Dict[str, Any]], progress: SweepBars, notes: List[str], opts: WatchOptions, metric: Optional[str] = None
) -> Group:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: List[Any] = [Text(_header(opts), style="dim")]
    if progress:
        grid = Table.grid(padding=(0, 2))
        for sweep, counts, total, completed, bad in progress:
            text = bar_text(total, completed, bad)
            ok, ko = text.count("█"), text.count("▓")
            bar = Text()
            bar.append(text[:ok], style="green")
            bar.append(text[ok : ok + ko], style="red")
            bar.append(text[ok + ko :], style="bright_black")
            label = Text()
            for i, (s, n) in enumerate(
                sorted(counts.items(), key=lambda kv: list(SHORT).index(kv[0]) if kv[0] in SHORT else 99)
            ):
                short = SHORT.get(s, s)
                label.append(("" if i == 0 else ", ") + f"{n} {short}", style=COLORS.get(short, ""))
            grid.add_row(Text(sweep, style="bold"), bar, Text(f"{completed + bad}/{total}"), label)
        parts.append(grid)
    if shown:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for c in columns(metric):
            table.add_column(c)
        for row in table_rows(shown, metric):
            table.add_row(*row[:4], Text(row[4], style=COLORS.get(row[4], "")), *row[5:])
        parts.append(table)
    else:
        parts.append(
            Text(
                "no active runs (`danlu status --all` lists finished ones)" if not opts.names else "no runs match",
                style="dim",
            )
        )
    for note in notes:
        parts.append(Text(f"warning: {note}", style="yellow"))
    return Group(*parts)


def render_text(
    shown: List[Dict[str, Any]], progress: SweepBars, notes: List[str], opts: WatchOptions, metric: Optional[str] = None
) -> str:
    lines = [_header(opts)]
    for sweep, counts, total, completed, bad in progress:
        lines.append(
            f"{sweep}  [{bar_text(total, completed, bad, ascii_only=True)}] {completed + bad}/{total}  "
            f"{counts_text(counts)}"
        )
    table = [ln for ln in render_plain(shown, metric).splitlines() if not ln.startswith("# ")]  # counts above
    lines.extend(table if shown else ["no active runs" if not opts.names else "no runs match"])
    lines.extend(f"warning: {n}" for n in notes)
    return "\n".join(lines)


def watch(store: Any, opts: WatchOptions) -> int:
    if sys.stdout.isatty():
        return _watch_live(store, opts)
    while True:  # not a terminal: one plain block per refresh
        shown, progress, notes, metric = _snapshot(store, opts)
        print(render_text(shown, progress, notes, opts, metric) + "\n", flush=True)
        if _done(shown, opts):
            return 0
        try:
            time.sleep(opts.interval)
        except KeyboardInterrupt:
            return 0


def _watch_live(store: Any, opts: WatchOptions) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console(no_color=bool(os.environ.get("NO_COLOR")))
    first: Optional[Snapshot] = _snapshot(store, opts)  # bad names fail here, before the screen is taken over
    try:
        with Live(console=console, auto_refresh=False, transient=False, redirect_stderr=False) as live:
            while True:
                shown, progress, notes, metric = first or _snapshot(store, opts)
                first = None
                live.update(render_rich(shown, progress, notes, opts, metric), refresh=True)
                if _done(shown, opts):
                    return 0
                time.sleep(opts.interval)
    except KeyboardInterrupt:
        return 0
