"""The stacks of every rank of a hung 2-node job, on the test cluster: the run ends FAILED with a reason that
names where the waiting ranks and the hung rank were, and the restart's logs hold a stack for each of the 4 ranks."""

from __future__ import annotations

from pathlib import Path

from danlu_helpers import danlu_env, submit_json, wait_status  # noqa: F401

from launcher.layout import SweepLayout

HUNG = [
    "experiment=tiny_ibq",
    "launch=torchrun",
    "cluster=testcluster",
    "resources.nodes=2",
    "resources.gpus_per_node=2",
    "launch.hang_timeout_s=15",
    "args.max_train_steps=30",
    "args.sleep_per_step=0.5",
    "args.hang_at_step=4",
    "args.hang_rank=2",
]


def test_a_hung_two_node_run_names_where_its_ranks_waited(slurm_cluster, danlu_env):
    submit_json(*HUNG, "--name", "hung", env=danlu_env)
    (item,) = wait_status("hung", danlu_env, timeout=300)
    assert item["state"] == "FAILED", item
    reason = item["reason"]
    # the three waiting ranks are in a collective, the hung one in the program's own loop
    assert reason.startswith("hung: 3 of 4 ranks in ") and "rank 2 in " in reason and "train.py:" in reason, reason
    restart = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / "hung").run(0).attempt(1).restart(0)
    text = "".join(p.read_text() for p in restart.stacks_files())
    for rank in range(4):
        assert f"rank {rank} (pid " in text, text[-3000:]
    assert "via faulthandler" in text or "via py-spy" in text
