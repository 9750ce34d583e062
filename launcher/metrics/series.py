"""A metric's series (step, value, time) and what a report says of it: the last value, the best and its step."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional, Sequence, Tuple

# metrics where more is better; every other metric (losses above all) is better when lower
_HIGHER_IS_BETTER = re.compile(r"acc|auc|f1|precision|recall|usage|score|reward|bleu|psnr|ssim|iou|map\b|margin", re.I)


def default_mode(name: str) -> str:
    """min or max: how a metric of this name gets better, unless the experiment or --mode says."""
    return "max" if _HIGHER_IS_BETTER.search(name) and "loss" not in name.lower() else "min"


def is_loss_like(name: str) -> bool:
    return "loss" in name.lower()


@dataclass
class Series:
    """One metric of one run, step by step (a step written again, after a restart resumed from a checkpoint, keeps
    its latest value)."""

    name: str
    source: str  # "log", "tensorboard" or "csv"
    steps: Sequence[int] = field(default_factory=list)  # lists, or arrays straight from the cache
    values: Sequence[float] = field(default_factory=list)
    times: Sequence[Optional[float]] = field(default_factory=list)  # None (or NaN) where unknown

    def __len__(self) -> int:
        return len(self.steps)

    def last(self) -> Optional[Tuple[int, float]]:
        return (self.steps[-1], self.values[-1]) if self.steps else None

    def best(self, mode: str) -> Optional[Tuple[int, float]]:
        """(step, value) of the best point: the first of equal ones."""
        if not self.steps:
            return None
        value = min(self.values) if mode == "min" else max(self.values)
        i = self.values.index(value)  # the first of equal ones
        return self.steps[i], self.values[i]

    def as_dict(self) -> Dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "steps": list(self.steps),
            "values": list(self.values),
            "times": [None if t is None or t != t else t for t in self.times],
        }


def from_points(name: str, source: str, points: Iterable[Tuple[int, float, Optional[float]]]) -> Series:
    """A series from (step, value, time) points in the order they were written: a step seen again replaces the
    earlier value (the restart after a checkpoint trains those steps again), then sorted by step."""
    by_step: Dict[int, Tuple[float, Optional[float]]] = {}
    for step, value, when in points:
        by_step[step] = (value, when)
    steps = sorted(by_step)
    return Series(name, source, steps, [by_step[k][0] for k in steps], [by_step[k][1] for k in steps])


def from_columns(
    name: str, source: str, steps: Sequence[int], values: Sequence[float], times: Sequence[float]
) -> Series:
    """from_points for columns (times NaN where unknown): the common case, steps only ever going up (no restart
    trained a step again), needs no regrouping."""
    if all(a < b for a, b in zip(steps, steps[1:], strict=False)):  # each step with the next
        return Series(name, source, steps, values, times)
    return from_points(name, source, zip(steps, values, (None if t != t else t for t in times), strict=True))


def choose_metric(names: Iterable[str], wanted: Optional[str] = None) -> Optional[str]:
    """The metric a report ranks by: `wanted` if given, else `loss`, else the first loss-like name, else the
    first name."""
    ordered = list(dict.fromkeys(names))
    if wanted:
        return wanted
    if "loss" in ordered:
        return "loss"
    return next((n for n in ordered if is_loss_like(n)), ordered[0] if ordered else None)
