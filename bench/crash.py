"""Section 5, round one's 2-node job: rank 3 dies at step 3; crash -> end of job, danlu vs a hand-written script,
as is (gloo on CPU) and with NCCL-like ranks that block in the collective (bench/hang_on_peer_loss.py)."""

from __future__ import annotations

from typing import Dict, List, Tuple

from bench.results import Results, Row, fmt
from bench.session import Session
from bench.shell import log, wait_nodes_idle
from bench.two_node_job import JobTimes, run_job

TOOLS = {
    "danlu": "danlu (srun --kill-on-bad-exit=1, node agent)",
    "hand-written": "hand-written sbatch (srun + accelerate launch, fixed port)",
}
KINDS = {
    False: "as is (gloo on CPU: surviving ranks see the closed socket)",
    True: "NCCL-like: surviving ranks block in the collective (bench/hang_on_peer_loss.py)",
}
Jobs = Dict[Tuple[str, bool], List[JobTimes]]  # (tool, NCCL-like) -> its jobs


def _run_all(ses: Session, reps: int, hang_reps: int, cap: float) -> Jobs:
    """Each tool `reps` times as is, danlu `hang_reps` times NCCL-like, the hand-written script once NCCL-like (it
    waits until the cap: once is enough)."""
    plan = [("danlu", False), ("hand-written", False)] * reps + [("danlu", True)] * hang_reps + [("hand-written", True)]
    results: Jobs = {}
    for tool, nccl in plan:
        wait_nodes_idle(["node1", "node2"])
        jt = run_job(ses, tool, nccl, cap)
        results.setdefault((tool, nccl), []).append(jt)
        c2e = (jt.ended - jt.crash) if jt.crash and jt.ended else float("nan")
        log(
            f"   {tool}{' nccl-like' if nccl else ''}: job {jt.job_id} {jt.state}; submit->step1 "
            f"{(jt.first_step or float('nan')) - jt.submitted:.1f}s; "
            f"crash->end {c2e:.1f}s{' (capped)' if jt.capped else ''}"
        )
    return results


def _rows(res: Results, results: Jobs, nccl: bool) -> Dict[str, Row]:
    """One row per tool that ran this kind of job, the first titled; by tool."""
    rows: Dict[str, Row] = {}
    for tool, name in TOOLS.items():
        jts = results.get((tool, nccl), [])
        if not jts:
            continue
        rows[tool] = res.add(
            Row(
                "5",
                "" if rows else f"crash -> end of job, {KINDS[nccl]}",
                name,
                samples=[j.ended - j.crash for j in jts if j.crash and j.ended],
                at_least=any(j.capped for j in jts),
                note="; ".join(sorted({j.state for j in jts})),
            )
        )
    return rows


def _summarize(res: Results, rows: Dict[str, Row], nccl: bool) -> None:
    if "danlu" in rows and "hand-written" in rows:
        d, h = rows["danlu"], rows["hand-written"]
        key = "crash_nccl" if nccl else "crash"
        res.figures[key], res.figures[key + "_hand"], res.figures[key + "_capped"] = (
            d.median,
            h.median,
            float(h.at_least),
        )
        ge = ">= " if h.at_least else ""
        res.ratio(
            "5",
            f"crash -> end ({'NCCL-like' if nccl else 'as is'}): hand-written "
            f"{ge}{h.median:.1f} s vs danlu {d.median:.1f} s ({ge}{h.median / d.median:.1f}x)",
        )
    if "danlu" not in rows:
        return
    what = "crash -> end < 30 s (NCCL-like ranks: the case that hangs)" if nccl else "crash -> end < 30 s (as is)"
    res.target(what, f"{fmt(rows['danlu'].median)} s median", rows["danlu"].median < 30)


def measure(ses: Session, res: Results, reps: int, hang_reps: int, cap: float) -> None:
    log(
        f"4. 2-node tiny_dpo, rank 3 dies at step 3: {reps} run(s) each as is, {hang_reps} with NCCL-like ranks; "
        f"cap {cap:.0f} s"
    )
    results = _run_all(ses, reps, hang_reps, cap)
    for nccl in (False, True):
        _summarize(res, _rows(res, results, nccl), nccl)
