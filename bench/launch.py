"""Section 5, launch overhead: submit -> first training step of the same 2-node job, danlu and the hand-written
script submitted in alternating order, one pair at a time (the machine's load drifts: pairs see the same load)."""

from __future__ import annotations

import statistics
from typing import Dict, List, Optional

from bench.results import Results, Row
from bench.session import Before, Session
from bench.shell import log, wait_nodes_idle
from bench.two_node_job import CRASH_ARGS, LAUNCH_ARGS_OVERRIDE, JobTimes, run_danlu_job, run_job

ORDER = ("danlu", "hand-written")
BEFORE_TOOL = "danlu before"
Jobs = Dict[str, List[JobTimes]]  # tool -> its jobs, pair by pair


def _run_pairs(ses: Session, pairs: int, before: Optional[Before]) -> Jobs:
    job_args = dict(CRASH_ARGS, **LAUNCH_ARGS_OVERRIDE)
    tools = ORDER + ((BEFORE_TOOL,) if before else ())
    log(
        f"5. launch overhead: {pairs} rounds of the same 2-node tiny_dpo job ({job_args['max_train_steps']} steps), "
        f"{', '.join(tools)} in alternating order"
    )
    runs: Jobs = {tool: [] for tool in tools}
    for k in range(pairs):
        for tool in tools if k % 2 == 0 else tools[::-1]:
            wait_nodes_idle(["node1", "node2"])
            if tool == BEFORE_TOOL and before is not None:
                jt = run_danlu_job(ses, False, 60, job_args, checkout=before.path)
            else:
                jt = run_job(ses, tool, False, 60, job_args)
            if not (jt.first_step and jt.started):
                raise RuntimeError(f"{tool} job {jt.job_id} ended {jt.state} without a first step")
            runs[tool].append(jt)
            log(
                f"   {tool}: job {jt.job_id} {jt.state}; submit->step1 {jt.first_step - jt.submitted:.2f}s "
                f"(submit command {jt.cli:.2f}s, job start->step1 {jt.first_step - jt.started:.2f}s)"
            )
    return runs


def _rows(res: Results, tool: str, jts: List[JobTimes], label: str = "") -> Row:
    """A tool's row, submit -> first step, and the rows of where that time went."""
    total = res.add(
        Row(
            "5",
            "submit -> first training step logged (2 nodes x 2 ranks)" if tool == "danlu" else "",
            label or ("danlu submit" if tool == "danlu" else "sbatch hand-written script"),
            samples=[j.first_step - j.submitted for j in jts],
        )
    )
    res.add(Row("5", "", "  of which the submit command", samples=[j.cli for j in jts]))
    res.add(
        Row(
            "5",
            "",
            "  of which submitted -> job running",
            samples=[j.started - j.submitted - j.cli for j in jts],
            note="as seen by polling squeue every 0.25 s",
        )
    )
    res.add(
        Row(
            "5",
            "",
            "  of which job start -> every rank up",
            samples=[j.ranks_up - j.started for j in jts if j.ranks_up],
            note="python/torch/accelerate start-up, rendezvous",
        )
    )
    res.add(
        Row(
            "5",
            "",
            "  of which every rank up -> step 1",
            samples=[j.first_step - j.ranks_up for j in jts if j.ranks_up],
            note="300 pretraining steps of the reference model, then step 1 (CPU)",
        )
    )
    return total


def _summarize(res: Results, d: Row, h: Row, runs: Jobs) -> None:
    paired = [
        a.first_step - a.submitted - (b.first_step - b.submitted)
        for a, b in zip(runs["danlu"], runs["hand-written"], strict=True)
    ]
    ratio = d.median / h.median
    res.figures["launch"], res.figures["launch_hand"] = d.median, h.median
    res.figures["launch_cli"] = statistics.median(j.cli for j in runs["danlu"])
    res.figures["launch_cli_hand"] = statistics.median(j.cli for j in runs["hand-written"])
    res.figures["launch_job"] = statistics.median(j.first_step - j.started for j in runs["danlu"])
    res.figures["launch_job_hand"] = statistics.median(j.first_step - j.started for j in runs["hand-written"])
    res.ratio(
        "5",
        f"launch: danlu / hand-written = {ratio:.2f} (medians, {d.median - h.median:+.2f} s); "
        f"paired difference median {statistics.median(paired):+.2f} s over {len(paired)} pairs",
    )
    res.target(
        "launch overhead within 10% of the hand-written script",
        f"{ratio:.2f}x ({d.median - h.median:+.2f} s) median of {len(paired)} pairs",
        ratio <= 1.1,
    )


def measure(ses: Session, res: Results, pairs: int, before: Optional[Before] = None) -> None:
    """Submit -> first training step, danlu and the hand-written script (and danlu at the commit `before`), `pairs`
    rounds."""
    runs = _run_pairs(ses, pairs, before)
    rows = {tool: _rows(res, tool, runs[tool]) for tool in ORDER}
    _summarize(res, rows["danlu"], rows["hand-written"], runs)
    if before is not None:
        then = _rows(res, BEFORE_TOOL, runs[BEFORE_TOOL], f"danlu submit at {before.label} (before this round)")
        job_now = statistics.median(j.first_step - j.started for j in runs["danlu"])
        job_then = statistics.median(j.first_step - j.started for j in runs[BEFORE_TOOL])
        res.ratio(
            "5",
            f"launch: danlu now / at {before.label} = {rows['danlu'].median / then.median:.2f} (submit -> step 1, "
            f"medians); job start -> step 1 {job_now:.2f} s now, {job_then:.2f} s before",
        )
