"""requeue.max_requeues is honoured with a reason. Real accelerate, more than one rank. (That nodes agree before
the requeue and that it is asked once, by task 0: tests/test_fault_matrix.py, every launch mode on 2x2.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from danlu_helpers import danlu_env, submit_json, wait_status  # noqa: F401
from test_signals import _job_processes

pytestmark = pytest.mark.slurm


def test_max_requeues_is_honoured_with_a_reason(slurm_cluster, danlu_env):
    """requeue.max_requeues=1 and far more work than two 2-minute starts: one requeue, then the run ends FAILED
    saying why (not COMPLETED, not requeued again), its last checkpoint the one taken at the second warning.
    (2-minute limits: under CI's load a 1-minute start could reach its warning before its ranks had started.)"""
    from launcher.layout import SweepLayout

    name = "tl-max1"
    submit_json(
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.gpus_per_node=2",
        "resources.time=2",
        "requeue.grace_s=30",
        "requeue.max_requeues=1",
        "args.sleep_per_step=1.0",
        "args.max_train_steps=500",
        "args.checkpointing_steps=1000",
        "+args.pretrain_steps=20",
        "--name",
        name,
        env=danlu_env,
    )
    (item,) = wait_status(name, danlu_env, timeout=900, poll=5)
    assert item["state"] == "FAILED", item
    assert item["reason"] == "stopped at the time limit after 1 requeue (requeue.max_requeues=1)", item
    run_layout = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0)
    restarts = run_layout.attempt(1).restarts()
    assert [r.number for r in restarts] == [0, 1], restarts
    last = restarts[-1].rank_log(0).read_text()
    saved = re.findall(r"received signal SIGUSR1 at step=(\d+); checkpoint saved", last)
    assert saved and (run_layout.output_dir / "checkpoints" / f"step_{saved[-1]}.pt").exists(), last[-1500:]
    assert _job_processes(str(run_layout.output_dir)) == []
