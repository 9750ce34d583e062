"""The requeue at a time limit, across nodes: nodes agree before it (every node's ranks have stopped), it is
asked once, and requeue.max_requeues is honoured with a reason. Real accelerate, more than one rank."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from danlu_helpers import danlu, danlu_env, submit_json, wait_status  # noqa: F401
from test_signals import _job_processes

pytestmark = pytest.mark.slurm

def test_two_nodes_agree_before_the_requeue(slurm_cluster, danlu_env):
    """2 nodes x 2 ranks (accelerate) at the time limit: every rank of both nodes checkpoints, both nodes' agents
    record that their ranks stopped, and only then task 0 asks Slurm for the one requeue; the run completes."""
    from launcher.layout import SweepLayout

    name = "tl-2x2"
    out = submit_json("experiment=tiny_dpo", "cluster=testcluster", "resources.nodes=2", "resources.gpus_per_node=2",
                      "resources.time=1", "requeue.grace_s=20", "requeue.max_requeues=4", "args.sleep_per_step=1.0",
                      "args.max_train_steps=30", "args.checkpointing_steps=1000", "+args.pretrain_steps=20",
                      "--name", name, env=danlu_env)
    (item,) = wait_status(name, danlu_env, timeout=600, poll=5)
    run_layout = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0)
    restarts = run_layout.attempt(1).restarts()
    assert item["state"] == "COMPLETED" and item["nodes"] == 2, item
    assert item["restarts"] >= 1 and len(restarts) == item["restarts"] + 1, (item, restarts)
    for r in restarts[:-1]:
        assert r.stopped("node0").exists() and r.stopped("node1").exists(), list(r.root.iterdir())
        head = r.agent_log("node0").read_text()
        assert "2 of 2 task(s) stopped for the requeue" in head and "requeue of job" in head and ": ok" in head, head
        assert "requeue of job" not in r.agent_log("node1").read_text()  # one requeue, asked by task 0 only
        for rank in range(4):
            assert f"signal SIGUSR1 reached rank={rank}" in r.rank_log(rank).read_text(), (r.root, rank)
    assert "done steps=30" in danlu("logs", out["runs"][0]["run"], env=danlu_env, check=True).stdout
    assert _job_processes(str(run_layout.output_dir)) == []



def test_max_requeues_is_honoured_with_a_reason(slurm_cluster, danlu_env):
    """requeue.max_requeues=1 and far more work than two 1-minute starts: one requeue, then the run ends FAILED
    saying why (not COMPLETED, not requeued again), its last checkpoint the one taken at the second warning."""
    from launcher.layout import SweepLayout

    name = "tl-max1"
    submit_json("experiment=tiny_dpo", "cluster=testcluster", "resources.gpus_per_node=2", "resources.time=1",
                "requeue.grace_s=20", "requeue.max_requeues=1", "args.sleep_per_step=1.0", "args.max_train_steps=500",
                "args.checkpointing_steps=1000", "+args.pretrain_steps=20", "--name", name, env=danlu_env)
    (item,) = wait_status(name, danlu_env, timeout=600, poll=5)
    assert item["state"] == "FAILED", item
    assert item["reason"] == "stopped at the time limit after 1 requeues (requeue.max_requeues=1)", item
    run_layout = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0)
    restarts = run_layout.attempt(1).restarts()
    assert [r.number for r in restarts] == [0, 1], restarts
    last = restarts[-1].rank_log(0).read_text()
    saved = re.findall(r"received signal SIGUSR1 at step=(\d+); checkpoint saved", last)
    assert saved and (run_layout.output_dir / "checkpoints" / f"step_{saved[-1]}.pt").exists(), last[-1500:]
    assert _job_processes(str(run_layout.output_dir)) == []
