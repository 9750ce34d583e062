"""Really distributed, or told so: on CPU-only nodes multi-rank accelerate runs form one gloo world (the agent sets
ACCELERATE_USE_CPU), and a program whose ranks trained as independent copies ends FAILED with that reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from danlu_helpers import danlu, danlu_env, submit_json, wait_status  # noqa: F401

pytestmark = pytest.mark.slurm

TWO_RANKS = (
    "experiment=tiny_dpo",
    "cluster=testcluster",
    "resources.gpus_per_node=2",
    "args.max_train_steps=6",
    "+args.pretrain_steps=20",
    "args.sleep_per_step=0.2",
)


def test_cpu_only_accelerate_ranks_form_one_world_without_cpu_in_the_program(slurm_cluster, danlu_env):
    """Accelerator() as DiffusionDPO builds it (no cpu=): without ACCELERATE_USE_CPU every rank would be alone."""
    name = "world-plain"
    out = submit_json(*TWO_RANKS, "+args.plain_accelerator=true", "--name", name, env=danlu_env)
    (item,) = wait_status(name, danlu_env, timeout=300)
    log = danlu("logs", out["runs"][0]["run"], env=danlu_env, check=True).stdout
    assert item["state"] == "COMPLETED", (item, log[-2000:])
    for rank in (0, 1):
        assert re.search(rf"step=6 .*rank={rank} world_size=2", log), log[-2000:]


def test_ranks_that_trained_as_independent_copies_are_not_completed(slurm_cluster, danlu_env):
    from launcher.layout import SweepLayout

    name = "world-alone"
    submit_json(*TWO_RANKS, "+args.independent_copies=true", "--name", name, env=danlu_env)
    (item,) = wait_status(name, danlu_env, timeout=300)
    agent = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0).attempt(1).restart(0).agent_log("node0")
    assert item["state"] == "FAILED", (item, agent.read_text())
    assert item["reason"].startswith("the ranks trained as independent copies, not one world of 2"), item
    assert "2 of 2 training processes on this node trained alone" in agent.read_text()
