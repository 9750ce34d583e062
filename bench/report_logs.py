"""Section 1, scale: `danlu report` over 100 runs x 10,000 steps x 3 metrics, first look and again, next to a
notebook's regex loop over the same logs (the logs and store of bench/report.py). Needs no Slurm."""

from __future__ import annotations

import os
import shutil
import time

from bench import report as report_bench
from bench.paths import DANLU
from bench.results import Results, Row
from bench.session import Session
from bench.shell import log


def measure(ses: Session, res: Results, runs: int, steps: int, reps: int) -> None:
    log(f"1. danlu report over {runs} runs x {steps:,} steps x 3 metrics")
    root = ses.scratch("report")
    env = {
        "DANLU_HOME": str(root / "home"),
        "DANLU_STORE": str(root / "home" / "store.sqlite"),
        "DANLU_RUNS_DIR": str(root / "runs"),
        "NO_COLOR": "1",
    }
    saved = dict(os.environ)
    try:
        dirs = report_bench.write_logs(root, runs, steps)
        report_bench.record(env, dirs)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    size = sum(p.stat().st_size for d in dirs for p in d.rglob("rank0.log"))
    cmd = [DANLU, "report", "bench"]
    cold = res.add(
        Row(
            "1",
            f"`danlu report`, {runs} runs x {steps:,} steps x 3 metrics ({size / 1e6:.0f} MB of logs)",
            "danlu report, first look (its cache empty)",
        )
    )
    for _ in range(max(2, reps // 2)):
        shutil.rmtree(root / "home" / "cache", ignore_errors=True)
        cold.samples += report_bench.timed(cmd, env, 1)
    warm = res.add(Row("1", "", "danlu report, again (logs unchanged)", samples=report_bench.timed(cmd, env, reps)))
    loop = res.add(Row("1", "", "a notebook's loop: every log, a regex per line (in-process, no table)"))
    for _ in range(2):
        t = time.perf_counter()
        report_bench.notebook_loop(dirs)
        loop.samples.append(time.perf_counter() - t)
    res.ratio(
        "1",
        f"report {runs}x{steps:,}: first look {cold.median / loop.median:.1f}x, again "
        f"{warm.median / loop.median:.2f}x the notebook loop (medians)",
    )
    res.figures["report_cold"], res.figures["report_warm"] = cold.median, warm.median
    res.figures["report_loop"] = loop.median
    shutil.rmtree(root, ignore_errors=True)
