"""Real Lightning (examples/tiny_lightning: LightningCLI, config.yaml, ModelCheckpoint on val_loss with save_last)
under launch=lightning on 2 nodes x 2 ranks: danlu owns the requeue, Lightning's own SLURM auto-requeue never acts,
the checkpoint signal reaches every rank, the ranks agree on a step, the checkpoint taken then is where the restart
resumes, and nothing is written into the program's working directory."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from danlu_helpers import danlu, danlu_env, submit_json, wait_status  # noqa: F401

pytestmark = pytest.mark.slurm

WORKDIR = Path(__file__).resolve().parents[1] / "examples" / "tiny_lightning"
SHAPE_2x2 = ("resources.nodes=2", "resources.gpus_per_node=2", "args.trainer.devices=2", "args.trainer.num_nodes=2")


def _workdir_files() -> set[str]:
    return {str(p.relative_to(WORKDIR)) for p in WORKDIR.rglob("*") if "__pycache__" not in p.parts}


def test_time_limit_on_2x2_lightning_requeued_by_danlu_resumes_where_it_stopped(slurm_cluster, danlu_env):
    from launcher.layout import SweepLayout

    before = _workdir_files()
    name = "light-tl"
    out = submit_json("experiment=tiny_lightning", "cluster=testcluster", *SHAPE_2x2, "resources.time=1",
                      "requeue.grace_s=20", "requeue.max_requeues=3", "args.trainer.max_steps=50",
                      "args.model.sleep_per_step=1", "--name", name, env=danlu_env)
    run = out["runs"][0]["run"]
    (item,) = wait_status(name, danlu_env, timeout=600, poll=5)
    layout = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0)
    restarts = layout.attempt(1).restarts()
    ranks = [[r.rank_log(k).read_text() for k in range(4)] for r in restarts]
    assert item["state"] == "COMPLETED", (item, [t[0][-1500:] for t in ranks])
    assert item["restarts"] >= 1 and len(restarts) == item["restarts"] + 1, item
    first = restarts[0]
    for k in range(4):
        agent = first.agent_log(f"rank{k}").read_text()
        # the program's own SIGUSR1 handler (Lightning's auto-requeue left it alone), found in the process table
        assert "sending SIGUSR1 to each of the 1 training process(es)" in agent, agent
        assert f"rank={k} world_size=4" in ranks[0][k], ranks[0][k][:2000]
        assert f"signal SIGUSR1 reached rank={k}" in ranks[0][k], ranks[0][k][-2000:]
    assert "requeue of job" in first.agent_log("rank0").read_text()
    saved = re.search(r"received signal SIGUSR1 at step=(\d+); checkpoint saved", ranks[0][0])
    assert saved, ranks[0][0][-2000:]
    for k in range(4):  # every rank of the next start resumes at the step the signal stopped
        assert f"resumed from checkpoint step={saved.group(1)} rank={k}" in ranks[1][k], ranks[1][k][:3000]
    last_steps = [int(s) for s in re.findall(r"^step=(\d+) .*rank=0 ", ranks[0][0], re.M)]
    assert last_steps and last_steps[-1] == int(saved.group(1)), last_steps[-3:]  # no step lost
    everything = "\n".join(t for start in ranks for t in start)
    assert "Handling auto-requeue signal" not in everything and "Requeued SLURM job" not in everything
    assert "done steps=50" in danlu("logs", run, env=danlu_env, check=True).stdout
    assert list(layout.output_dir.rglob("hpc_ckpt_*")) == []
    assert (layout.output_dir / "checkpoints" / "last.ckpt").exists()
    assert _workdir_files() == before  # nothing in the program's working directory
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(layout.output_dir) not in ps
