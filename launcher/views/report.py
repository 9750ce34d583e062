"""`danlu report SWEEP`: which run won. One row per run: the swept values (only the keys that differ across the
sweep), state, steps done, the last and best value of the chosen metric, a sparkline; the best run marked. With a
swept seed, one row per point: mean +- std over its seeds (of each run's best value), the best point marked."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..metrics.series import Series, choose_metric, default_mode

SPARKS = "▁▂▃▄▅▆▇█"


@dataclass
class RunReport:
    run: str
    state: str
    values: Dict[str, str]  # the sweep point: key -> value, as overridden
    series: Dict[str, Series] = field(default_factory=dict)
    idx: int = 0  # the run's index in its sweep
    code: Optional[str] = None  # the code key of its latest attempt (None: the live workdir, unknown)


def code_differs(runs: Sequence[RunReport]) -> Tuple[Optional[str], Dict[str, bool]]:
    """(the sweep's first run, run -> True when its latest attempt ran other code than the first run's latest).
    A run without a code key (or a first run without one) is unknown: never marked."""
    if not runs:
        return None, {}
    first = min(runs, key=lambda r: r.idx)
    return first.run, {r.run: bool(first.code and r.code and r.code != first.code) for r in runs}


def point_values(overrides: Sequence[str]) -> Dict[str, str]:
    """key -> value of `key=value` overrides (a leading + or ~ dropped)."""
    out: Dict[str, str] = {}
    for o in overrides:
        key, eq, value = o.partition("=")
        if eq:
            out[key.lstrip("+~")] = value
    return out


def swept_keys(runs: Sequence[RunReport]) -> List[str]:
    """The keys whose values differ across the runs, in the order they first appear."""
    keys = list(dict.fromkeys(k for r in runs for k in r.values))
    return [k for k in keys if len({r.values.get(k) for r in runs}) > 1]


def seed_key(keys: Sequence[str]) -> Optional[str]:
    return next((k for k in keys if k.rsplit(".", 1)[-1] in ("seed", "seeds")), None)


def sparkline(values: Sequence[float], width: int = 16) -> str:
    if not values:
        return ""
    if len(values) > width:  # the mean of each of `width` equal slices
        n = len(values)
        values = [statistics.fmean(values[i * n // width : (i + 1) * n // width]) for i in range(width)]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * len(SPARKS)))] for v in values)


def run_item(r: RunReport, keys: Sequence[str], chosen: Optional[str], how: str) -> Dict[str, Any]:
    """One run's row of the report: its swept values, steps done, and the last and best value of the metric."""
    s = r.series.get(chosen) if chosen else None
    last, best = (s.last(), s.best(how)) if s else (None, None)
    steps = max((x.steps[-1] for x in r.series.values() if x.steps), default=0)
    return {
        "run": r.run,
        "state": r.state,
        "values": {k: r.values.get(k) for k in keys},
        "steps": steps,
        "last": last[1] if last else None,
        "best": best[1] if best else None,
        "best_step": best[0] if best else None,
        "series": r.series,
    }  # Series objects: as_json() makes them lists


def mark_best_run(items: List[Dict[str, Any]], how: str) -> None:
    """Sets each item's "best_run": true for the one run whose best value is the best of all."""
    better = min if how == "min" else max
    scored = [i for i in items if i["best"] is not None]
    winner = better(scored, key=lambda i: i["best"])["run"] if scored else None
    for i in items:
        i["best_run"] = i["run"] == winner


def seed_point(values: Dict[str, Any], members: List[Dict[str, Any]], seed: str) -> Dict[str, Any]:
    """One sweep point over its seeds: its runs, their seeds, and the mean and std of their best values."""
    bests = [m["best"] for m in members if m["best"] is not None]
    return {
        "values": values,
        "runs": [m["run"] for m in members],
        "seeds": [m["values"].get(seed) for m in members],
        "mean": statistics.fmean(bests) if bests else None,
        "std": statistics.stdev(bests) if len(bests) > 1 else 0.0 if bests else None,
    }


def seed_points(items: List[Dict[str, Any]], keys: Sequence[str], seed: str, how: str) -> List[Dict[str, Any]]:
    """The runs grouped by their values of every swept key but the seed, each group a point; the best one marked."""
    others = [k for k in keys if k != seed]
    groups: Dict[Tuple[Any, ...], List[Dict[str, Any]]] = {}  # the other keys' values -> runs
    for i in items:
        groups.setdefault(tuple(i["values"].get(k) for k in others), []).append(i)
    points = [seed_point(dict(zip(others, vals, strict=True)), members, seed) for vals, members in groups.items()]
    better = min if how == "min" else max
    ranked = [p for p in points if p["mean"] is not None]
    top = better(ranked, key=lambda p: p["mean"]) if ranked else None
    for p in points:
        p["best_point"] = p is top
    return points


def build(
    runs: Sequence[RunReport],
    metric: Optional[str] = None,
    mode: Optional[str] = None,
    group_by_seed: Optional[bool] = None,
) -> Dict[str, Any]:
    """The report as data (what --json prints and the table shows)."""
    keys = swept_keys(runs)
    chosen = choose_metric((n for r in runs for n in r.series), metric)
    how = mode or (default_mode(chosen) if chosen else "min")
    seed = seed_key(keys)
    grouping = bool(seed) if group_by_seed is None else group_by_seed and seed is not None
    items = [run_item(r, keys, chosen, how) for r in runs]
    mark_best_run(items, how)
    first, differs = code_differs(runs)
    for i in items:
        i["code_differs"] = differs[i["run"]]
    return {
        "first_run": first,
        "metric": chosen,
        "mode": how,
        "keys": keys,
        "seed_key": seed if grouping else None,
        "runs": items,
        "points": seed_points(items, keys, seed, how) if grouping and seed else [],
    }


def as_json(report: Dict[str, Any]) -> Dict[str, Any]:
    """The report with every run's series as plain lists (what --json prints)."""
    runs = [dict(i, series={n: s.as_dict() for n, s in i["series"].items()}) for i in report["runs"]]
    return dict(report, runs=runs)


def number_text(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.5g}"


def render(report: Dict[str, Any], sparks: bool = True) -> str:
    keys, metric = report["keys"], report["metric"] or "-"
    head = (
        ["", "RUN"]
        + [column_label(keys, k) for k in keys]
        + ["ST", "STEPS", f"LAST({metric})", f"BEST({metric})", "AT"]
        + (["TREND"] if sparks else [])
    )
    rows = []
    for i in report["runs"]:
        s = i["series"].get(report["metric"]) if report["metric"] else None
        rows.append(
            ["*" if i["best_run"] else "", i["run"] + ("*" if i.get("code_differs") else "")]
            + [str(i["values"].get(k, "")) for k in keys]
            + [
                i["state"],
                str(i["steps"]),
                number_text(i["last"]),
                number_text(i["best"]),
                "-" if i["best_step"] is None else str(i["best_step"]),
            ]
            + ([sparkline(s.values) if s else ""] if sparks else [])
        )
    lines = [f"# {metric} ({report['mode']}): * marks the best run", _columns(head, rows)]
    footer = code_footer(report)
    if footer:
        lines.append(footer)
    if report["points"]:
        others = [k for k in keys if k != report["seed_key"]]
        phead = [""] + [column_label(keys, k) for k in others] + ["SEEDS", f"MEAN({metric})", "STD"]
        prow = [
            ["*" if p["best_point"] else ""]
            + [str(p["values"].get(k, "")) for k in others]
            + [",".join(str(s) for s in p["seeds"]), number_text(p["mean"]), number_text(p["std"])]
            for p in report["points"]
        ]
        lines += [
            "",
            f"# over seeds ({report['seed_key']}): mean +- std of each run's best {metric}",
            _columns(phead, prow),
        ]
    return "\n".join(lines)


def code_footer(report: Mapping[str, Any]) -> Optional[str]:
    """The line explaining the mark after a run's name, when a run trained other code than the sweep's first."""
    if not any(i.get("code_differs") for i in report["runs"]):
        return None
    return f"* trained other code than {report.get('first_run')} (a rerun with --code current): compare with danlu diff"


def column_label(keys: Sequence[str], key: str) -> str:
    """A column's name: the key's last part in capitals (args.beta_dpo: BETA_DPO) where that is unambiguous."""
    tail = key.rsplit(".", 1)[-1]
    return tail.upper() if sum(k.rsplit(".", 1)[-1] == tail for k in keys) == 1 else key


def _columns(head: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]  # a cell per column in every row
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head] + rows)
