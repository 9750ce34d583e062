"""The messages of `danlu notify`: a failed run's (reason, last lines of its log) and the sweep's summary (how its
runs ended, which one won by the report's metric, the table of `danlu report`). Each is a dict whose "text" is
what a chat bot shows; the json format sends the whole dict (launcher/webhook.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..backends import batch_output
from ..layout import RunLayout
from ..state.failure import failed_log, failure_text, log_tail
from ..words import counted
from .report import number_text, render

NOT_FAILED = ("COMPLETED", "CANCELLED")
MAX_LISTED = 20  # failed runs named in the summary's text


def failed(row: Any) -> bool:
    """A run whose latest attempt ended without completing, other than by a cancel."""
    return bool(row["final"]) and row["state"] not in NOT_FAILED


def failure(row: Any) -> Dict[str, Any]:
    files = RunLayout(Path(row["run_dir"])).attempt(int(row["attempt"]))
    log = failed_log(files) or batch_output(row)
    tail = log_tail(log)
    reason = row["reason"] or row["state"].lower()
    where = f" (attempt {row['attempt']}, job {row['job_id']})" if row["job_id"] else ""
    text = failure_text(row["run"], row["sweep"], row["state"], reason, where, log, tail)
    return {
        "event": "run_failed",
        "sweep": row["sweep"],
        "run": row["run"],
        "attempt": int(row["attempt"]),
        "job_id": row["job_id"],
        "state": row["state"],
        "exit_code": row["exit_code"],
        "reason": reason,
        "log": str(log) if log else None,
        "log_tail": tail,
        "text": text,
    }


def state_counts(rows: Sequence[Any]) -> Dict[str, int]:
    """How many of the runs are in each state."""
    counts: Dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return counts


def winners(report: Dict[str, Any]) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """The report's best run and its best point over seeds (None where it has none)."""
    best = next((i for i in report["runs"] if i["best_run"]), None)
    top = next((p for p in report["points"] if p.get("best_point")), None)
    return best, top


def best_lines(metric: Optional[str], best: Optional[Dict[str, Any]], top: Optional[Dict[str, Any]]) -> List[str]:
    """The best point over seeds and the best run, each with its value of the metric."""
    lines: List[str] = []
    if top is not None:
        point = " ".join(f"{k}={v}" for k, v in top["values"].items()) or "(one point)"
        lines.append(
            f"best point: {point}: {metric} {number_text(top['mean'])} +- {number_text(top['std'])} "
            f"over seeds {','.join(str(s) for s in top['seeds'])}"
        )
    if best is not None:
        point = " ".join(f"{k}={v}" for k, v in best["values"].items())
        lines.append(
            f"best run: {best['run']}{' (' + point + ')' if point else ''}: {metric} "
            f"{number_text(best['best'])} at step {best['best_step']}"
        )
    return lines


def failed_lines(sweep: str, rows: Sequence[Any]) -> List[str]:
    """The failed runs with their reasons, at most MAX_LISTED of them, then how many more."""
    bad = [r for r in rows if failed(r)]
    lines = [f"{r['state']}: {r['run']}: {r['reason'] or '-'}" for r in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        lines.append(f"... and {len(bad) - MAX_LISTED} more failed (danlu status {sweep} --state FAILED)")
    return lines


def summary_runs(rows: Sequence[Any], report: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each run of the report with its values, steps, metric and why it ended (the json format's runs)."""
    return [
        {
            "run": i["run"],
            "state": i["state"],
            "values": i["values"],
            "steps": i["steps"],
            "last": i["last"],
            "best": i["best"],
            "best_step": i["best_step"],
            "reason": next((r["reason"] for r in rows if r["run"] == i["run"]), "") or "",
        }
        for i in report["runs"]
    ]


def summary(sweep: str, rows: Sequence[Any], report: Dict[str, Any]) -> Dict[str, Any]:
    """The sweep's summary: how its runs ended, the best run (and point), the failed runs and the report's table."""
    counts = state_counts(rows)
    active = sum(1 for r in rows if not r["final"])
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    lines = [
        f"danlu: sweep {sweep} ended: {counted(len(rows), 'run')}: {states}"
        + (f" ({active} not ended yet)" if active else "")
    ]
    metric = report["metric"]
    best, top = winners(report)
    lines += best_lines(metric, best, top) + failed_lines(sweep, rows)
    if metric:
        lines += ["", render(report, sparks=False)]
    return {
        "event": "sweep_ended",
        "sweep": sweep,
        "counts": counts,
        "not_ended": active,
        "metric": metric,
        "mode": report["mode"],
        "best_run": best["run"] if best else None,
        "best_point": top["values"] if top else None,
        "runs": summary_runs(rows, report),
        "text": "\n".join(lines),
    }


def to_announce(rows: Sequence[Any]) -> List[Any]:
    """Failed runs whose failure was not sent yet (the batch script sends it as the job ends when it can)."""
    return [
        r for r in rows if failed(r) and not RunLayout(Path(r["run_dir"])).attempt(int(r["attempt"])).notified.exists()
    ]
