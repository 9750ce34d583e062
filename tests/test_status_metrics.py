"""Issue 17: `danlu status` (and `--watch`) shows a running run's latest step and loss, read from the tail of rank
0's log; checked against the rank log itself, on the test cluster (tiny_dpo, 2 ranks under accelerate)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from danlu_helpers import danlu, danlu_env, status_json, submit_json, wait_status  # noqa: F401
from test_watch import VENV_BIN

pytestmark = pytest.mark.slurm


def _columns(table: str, run: str) -> dict:
    lines = [ln for ln in table.splitlines() if not ln.startswith("#")]
    head, row = lines[0].split(), next(ln for ln in lines if ln.startswith(run + " ")).split()
    return dict(zip(head, row, strict=False))  # a cell with spaces in it: the columns before it still line up


def _logged(run_dir: str, step: int) -> float:
    """The loss rank 0 logged at `step` (the latest start that reached it)."""
    text = "".join(p.read_text() for p in sorted(Path(run_dir).glob("logs/attempt-1/restart-*/rank0.log")))
    assert text, sorted(str(p) for p in Path(run_dir).rglob("*.log"))  # 2 ranks: each has its own log
    found = re.findall(rf"^step={step} loss=([\d.]+) .*\brank=0\b", text, re.M)
    assert found, (step, text[-1500:])
    return float(found[-1])


def test_status_shows_a_running_runs_step_and_loss(slurm_cluster, danlu_env):
    out = submit_json(
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.gpus_per_node=2",
        "args.max_train_steps=60",
        "args.sleep_per_step=1.0",
        "+args.pretrain_steps=5",
        "--name",
        "live",
        env=danlu_env,
    )
    run = out["runs"][0]["run"]
    try:
        deadline = time.time() + 400
        while True:
            (item,) = status_json("live", env=danlu_env)
            if item["state"] == "RUNNING" and item["step"]:
                break
            assert time.time() < deadline and not item["final"], item
            time.sleep(2)
        assert set(item["metrics"]) >= {"loss", "implicit_acc", "mse_w", "mse_l"}, item
        assert item["metrics"]["loss"] == _logged(item["run_dir"], item["step"])

        time.sleep(3)  # a few steps later, in the table
        cols = _columns(danlu("status", "live", env=danlu_env, check=True).stdout, run)
        assert cols["ST"] == "R" and int(cols["STEP"]) > item["step"], cols
        assert math.isclose(float(cols["LOSS"]), _logged(item["run_dir"], int(cols["STEP"])), rel_tol=1e-3), cols
        assert list(cols)[-1] == "NODELIST(REASON)"  # squeue's last column stays last
        assert "STEP" not in danlu("status", "live", "--no-metrics", env=danlu_env, check=True).stdout

        # --watch (piped: a plain block per refresh) shows the steps going up
        watch = subprocess.Popen(
            [f"{VENV_BIN}/danlu", "status", "--watch", "live", "--interval", "1"],
            env=dict(os.environ, **danlu_env),
            stdout=subprocess.PIPE,
            text=True,
        )
        steps, head = [], ""
        try:
            assert watch.stdout is not None
            for line in watch.stdout:
                if line.startswith(run + " "):
                    steps.append(int(_columns(head + line, run)["STEP"]))
                    if len(set(steps)) >= 3:
                        break
                elif line.startswith("RUN "):
                    head = line
        finally:
            watch.kill()
            watch.wait()
        assert steps == sorted(steps) and len(set(steps)) >= 3, steps
    finally:
        danlu("cancel", "live", env=danlu_env)
    (done,) = wait_status("live", danlu_env, timeout=120)
    assert done["state"] == "CANCELLED" and done["step"] is None, done
    assert "STEP" not in danlu("status", "--all", env=danlu_env, check=True).stdout
