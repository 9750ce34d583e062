"""An unmodified LightningCLI program shaped like upstream's (tests/programs/lightning_upstream: `ckpt_path: null`,
checkpoint and log folders fixed in its YAML, no callback of danlu's) run by danlu on the test cluster: each run of a
sweep writes its own folders, a run that meets its time limit resumes from its own state, and the report ranks the
runs by the loss their TensorBoard logger wrote."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from danlu_helpers import danlu, danlu_env, submit_json, wait_status  # noqa: F401

from launcher.layout import SweepLayout

pytestmark = pytest.mark.slurm

PROGRAM = Path(__file__).resolve().parent / "programs" / "lightning_upstream"
# one node, two ranks as two tasks without GPUs; a 2-minute limit, the warning 20 s before it
SHAPE = [
    "experiment=ibq",
    f"workdir={PROGRAM}",
    "cluster=testcluster",
    "env=none",
    f"launch.python={sys.executable}",
    "resources.nodes=1",
    "resources.gpus_per_node=0",
    "launch.tasks_per_node=2",
    "resources.time=2",
    "requeue.grace_s=20",
    "requeue.max_requeues=3",
    "+args.model.init_args.step_seconds=0.5",
    "+args.trainer.enable_progress_bar=false",
]
SHORT, LONG = 40, 240  # steps: the short run ends in its first start (its last checkpoint at step 40, as its
# ModelCheckpoint saves every 20); the long one needs more than one


def _shared_folders() -> list:
    """The folders the program's YAML names (relative to its workdir), which no run may have written."""
    return [p for p in (PROGRAM.parent / "ckpt", PROGRAM.parent / "logs") if p.exists()]


def test_a_sweep_keeps_each_runs_folders_and_progress_and_is_ranked_by_its_loss(slurm_cluster, danlu_env):
    before = _shared_folders()
    name = "upstream-lightning"
    submit_json("-m", *SHAPE, f"+args.trainer.max_steps={SHORT},{LONG}", "--name", name, env=danlu_env)
    items = wait_status(name, danlu_env, timeout=1200, poll=5)
    assert [i["state"] for i in items] == ["COMPLETED", "COMPLETED"], items
    sweep = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name)
    short, long = sweep.run(0), sweep.run(1)
    for run, steps in ((short, SHORT), (long, LONG)):
        ckpt = run.output_dir / "ckpt" / "tiny_ibq"
        assert (ckpt / "last.ckpt").is_file(), sorted(p.name for p in run.output_dir.rglob("*"))
        assert list((run.output_dir / "logs" / "tiny_ibq" / "tiny_ibq").glob("events.out.tfevents.*"))
        last = run.attempt(1).restarts()[-1].rank_log(0).read_text()
        assert f"`max_steps={steps}` reached" in last, last[-2000:]
    assert _shared_folders() == before  # nothing written where the YAML points every run

    # the long run met its time limit: saved at the warning, and the next start resumed at that very step
    restarts = long.attempt(1).restarts()
    assert len(restarts) >= 2, restarts
    saved = json.loads(Path(f"{long.stop_checkpoint}.json").read_text())["step"]
    first = restarts[0].rank_log(0).read_text()
    stops = [int(s) for s in re.findall(r"danlu: received signal SIG\w+ at step=(\d+); checkpoint saved", first)]
    assert stops and stops[0] > 0, first[-2000:]
    second = restarts[1]
    resumed = second.read_resumed_from()
    assert resumed and resumed["path"] in (str(long.stop_checkpoint), str(long.output_dir / "ckpt/tiny_ibq/last.ckpt"))
    for rank in (0, 1):  # every rank resumed at the very step the checkpoint was taken: no step lost
        at = re.findall(
            r"danlu: resumed from checkpoint step=(\d+) rank=%d \((\S+)\)" % rank, second.rank_log(rank).read_text()
        )
        assert at and int(at[0][0]) == stops[0] and at[0][1] == resumed["path"], (rank, at, stops)
    assert saved >= stops[0]
    assert not short.stop_checkpoint.exists()  # never stopped: nothing saved for it

    shown = danlu("show", f"{name}/1", env=danlu_env)
    assert shown.returncode == 0 and f"resumed from {resumed['what']}" in shown.stdout, shown.stdout
    assert f"extra cfg  {sweep.lightning_config(1, 1)}" in shown.stdout, shown.stdout

    done = danlu("report", name, "--json", "--metric", "train/loss", env=danlu_env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    bests = {r["run"]: r["best"] for r in report["runs"]}
    assert all(v is not None for v in bests.values()) and len(bests) == 2, report
    winner = min(bests, key=lambda r: bests[r])
    assert [r["run"] for r in report["runs"] if r["best_run"]] == [winner]

    # trained further (a new attempt of the short run): it resumes from its own last checkpoint, not from step 0
    more = danlu("rerun", f"{name}/0", "--continue", f"++args.trainer.max_steps={SHORT + 20}", env=danlu_env)
    assert more.returncode == 0, more.stderr
    (item,) = wait_status(f"{name}/0", danlu_env, timeout=600, poll=5)
    assert item["state"] == "COMPLETED" and item["attempt"] == 2, item
    start = short.attempt(2).restarts()[0]
    assert start.read_resumed_from()["path"] == str(short.output_dir / "ckpt" / "tiny_ibq" / "last.ckpt")
    log = start.rank_log(0).read_text()
    assert f"danlu: resumed from checkpoint step={SHORT} rank=0" in log and f"`max_steps={SHORT + 20}` reached" in log
