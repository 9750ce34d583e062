"""What one bench run measured: its rows, ratios, targets, notes and figures, held by one `Results` that every
section is given and RESULTS.md is written from."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

Ratio = Tuple[str, str]  # (section, text)
Target = Tuple[str, str, Optional[bool]]  # (target, measured, met; None when it does not apply)


@dataclass
class Row:
    """One line of a results table: what was measured, with which tool, and its samples."""

    section: str
    what: str
    tool: str
    samples: List[float] = field(default_factory=list)
    unit: str = "s"
    calls: str = ""
    note: str = ""
    at_least: bool = False  # the samples are lower bounds (a capped wait)
    cpu: List[float] = field(default_factory=list)
    version: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def best(self) -> float:
        return min(self.samples) if self.samples else float("nan")


@dataclass
class Results:
    """Everything a run measured, in the order it was measured."""

    version: str = "22.05"  # the Slurm version the rows being added are measured on (Session.use_slurm)
    rows: List[Row] = field(default_factory=list)
    ratios: List[Ratio] = field(default_factory=list)
    targets: List[Target] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    figures: Dict[str, Any] = field(default_factory=dict)  # the numbers (and breakdowns) the findings are written from
    slurm_seen: Dict[str, str] = field(default_factory=dict)  # version -> what its sinfo --version said
    sweep_phases: List[str] = field(default_factory=list)  # where each timed sweep's time went (DANLU_TIMINGS)
    blocks: List[Tuple[str, str]] = field(default_factory=list)  # (title, markdown): a section's own tables

    def add(self, row: Row) -> Row:
        """Keep `row` (measured on the current Slurm version unless it says otherwise) and hand it back."""
        row.version = row.version or self.version
        self.rows.append(row)
        return row

    def ratio(self, section: str, text: str) -> None:
        self.ratios.append((section, text))

    def target(self, target: str, measured: str, met: Optional[bool]) -> None:
        self.targets.append((target, measured, met))


def fmt(x: float, unit: str = "s") -> str:
    """A figure as the tables show it: seconds with 2-3 significant digits, counts as they are, '-' for none."""
    if x != x:  # nan
        return "-"
    if unit == "s":
        return f"{x:.3f}" if x < 1 else (f"{x:.2f}" if x < 10 else f"{x:.1f}")
    return f"{x:g}"


def counts_text(counts: Dict[str, int]) -> str:
    """Slurm calls by command, as the Slurm calls column shows them ('1 sacct, 1 squeue'; '0' for none)."""
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "0"
