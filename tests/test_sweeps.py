"""Issue 6: sweeps as job arrays, and rerunning only what failed (real Slurm)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from danlu_helpers import danlu, danlu_env, status_json, submit_json, wait_status  # noqa: F401

pytestmark = pytest.mark.slurm


def _sbatch_calls(trace: Path) -> int:
    return sum(1 for line in trace.read_text().splitlines() if line == "sbatch") if trace.exists() else 0


@pytest.fixture
def sbatch_counter(tmp_path, danlu_env):
    """Count sbatch calls with a PATH shim that logs and then runs the real sbatch."""
    shim = tmp_path / "shim"
    shim.mkdir()
    trace = tmp_path / "sbatch.trace"
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    (shim / "sbatch").write_text(f'#!/bin/bash\necho sbatch >> {trace}\nexec {real} "$@"\n')
    (shim / "sbatch").chmod(0o755)
    import os

    danlu_env["PATH"] = f"{shim}:{os.environ['PATH']}"
    return trace


def test_sweep_two_crash_rerun_resumes_from_checkpoints(slurm_cluster, danlu_env, sbatch_counter):
    out = submit_json(
        "-m",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "args.seed=1,2",
        "args.crash_at_step=-1,7",
        "args.checkpointing_steps=2",
        "args.max_train_steps=12",
        env=danlu_env,
    )
    sweep = out["sweep"]
    assert re.fullmatch(r"tiny_dpo-[0-9a-f]{4}", sweep)
    assert [r["run"] for r in out["runs"]] == [f"{sweep}/{i}" for i in range(4)]
    assert _sbatch_calls(sbatch_counter) == 1  # one array for the whole sweep
    assert len({r["job_id"].split("_")[0] for r in out["runs"]}) == 1

    items = wait_status(sweep, danlu_env, timeout=240)
    states = {i["run"]: i["state"] for i in items}
    failed = sorted(r for r, s in states.items() if s == "FAILED")
    assert sorted(states.values()) == ["COMPLETED", "COMPLETED", "FAILED", "FAILED"], items
    for i in items:
        if i["state"] == "FAILED":
            assert "injected crash at step 7" in i["reason"], i

    # status groups by sweep with counts per state
    table = danlu("status", "--all", sweep, env=danlu_env, check=True).stdout
    assert f"# {sweep}: " in table and "2 COMPLETED" in table and "2 FAILED" in table

    before = _sbatch_calls(sbatch_counter)
    rerun = danlu("rerun", sweep, "args.crash_at_step=-1", "--json", env=danlu_env, check=True)
    rerun_runs = sorted(r["run"] for r in json.loads(rerun.stdout)["runs"])
    assert rerun_runs == failed
    assert _sbatch_calls(sbatch_counter) == before + 1  # both reruns in one array

    items = wait_status(sweep, danlu_env, timeout=240)
    by_run = {i["run"]: i for i in items}
    for run in failed:
        assert by_run[run]["state"] == "COMPLETED" and by_run[run]["attempt"] == 2, by_run[run]
        log = danlu("logs", run, env=danlu_env, check=True).stdout
        m = re.search(r"resumed from checkpoint step=(\d+)", log)
        assert m, log[-2000:]
        assert int(m.group(1)) == 6  # last checkpoint before the crash at step 7
        show = json.loads(danlu("show", run, "--json", env=danlu_env, check=True).stdout)
        assert [a["state"] for a in show["attempts"]] == ["FAILED", "COMPLETED"]
        assert show["attempts"][1]["overrides"] == ["args.crash_at_step=-1"]
        assert show["run_dir"].endswith(run.split("/")[1])
    for run in set(by_run) - set(failed):
        assert by_run[run]["attempt"] == 1  # completed runs are never rerun

    again = danlu("rerun", sweep, env=danlu_env)
    assert again.returncode == 0, again.stderr
    assert "nothing to rerun" in again.stderr
    assert _sbatch_calls(sbatch_counter) == before + 1


def test_sweep_runs_get_tracker_variables(slurm_cluster, danlu_env):
    out = submit_json(
        "experiment=tiny_ibq",
        "cluster=testcluster",
        "launch=python",
        "args.max_train_steps=2",
        "--name",
        "wandbvars",
        env=danlu_env,
    )
    (run,) = out["runs"]
    wait_status("wandbvars", danlu_env, timeout=180)
    script = json.loads(danlu("show", run["run"], "--json", env=danlu_env, check=True).stdout)["script"]
    assert "WANDB_RUN_GROUP=wandbvars" in script and "WANDB_NAME=wandbvars/0" in script


def test_two_resource_shapes_make_two_arrays(slurm_cluster, danlu_env, sbatch_counter):
    out = submit_json(
        "-m",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.nodes=1,2",
        "args.seed=1,2",
        "resources.extra_sbatch=[--hold]",
        env=danlu_env,
    )
    try:
        assert _sbatch_calls(sbatch_counter) == 2
        arrays = {}
        for r in out["runs"]:
            arrays.setdefault(r["job_id"].split("_")[0], []).append(r["run"])
        assert len(arrays) == 2 and sorted(len(v) for v in arrays.values()) == [2, 2]
        q = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i %D", "-j", ",".join(arrays)], capture_output=True, text=True, check=True
        ).stdout.split("\n")
        nodes = {line.split()[0].split("_")[0]: line.split()[1] for line in q if line.strip()}
        assert sorted(nodes.values()) == ["1", "2"]
    finally:
        danlu("cancel", out["sweep"], env=danlu_env)


def test_sweep_larger_than_max_array_size_is_split(slurm_cluster, danlu_env, sbatch_counter):
    """A limit other than the profile's (1001, as the test cluster's MaxArraySize): the split follows the
    setting, and every piece is a real array Slurm accepted."""
    from launcher.spec.options import ClusterSpec

    limit, n = 4, 9
    assert limit != ClusterSpec().max_array_size
    out = submit_json(
        "-m",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        f"cluster.max_array_size={limit}",
        f"args.seed=range(0,{n})",
        "resources.extra_sbatch=[--hold]",
        env=danlu_env,
    )
    try:
        assert len(out["runs"]) == n
        assert _sbatch_calls(sbatch_counter) == 3  # 4 + 4 + 1
        ids = [r["job_id"] for r in out["runs"]]
        assert len(set(ids)) == n  # every run exactly once
        arrays: dict = {}
        for i in ids:
            arrays.setdefault(i.split("_")[0], []).append(i)
        assert sorted(len(v) for v in arrays.values()) == [1, 4, 4], arrays
        q = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(arrays)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert sorted(q) == sorted(ids)
        items = status_json(out["sweep"], env=danlu_env)
        assert len(items) == n and all(i["state"] == "PENDING" for i in items)
    finally:
        danlu("cancel", out["sweep"], env=danlu_env)


def test_rerun_excluding_the_node_a_two_node_run_failed_on(slurm_cluster, danlu_env):
    """A 2-node run whose rank on the second node raises: `rerun --exclude-failed-nodes` keeps the rerun off that
    node only (its agent recorded the failure; the other node was merely stopped), here as a 1-node rerun that
    completes on the other node. Slurm's compact node list (node[1-2]) never reaches Hydra as a list or a sweep."""
    from launcher.layout import SweepLayout

    submit_json(
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "launch=python",
        "resources.nodes=2",
        "args.max_train_steps=6",
        "args.crash_at_step=2",
        "args.crash_rank=1",
        "--name",
        "onenode",
        env=danlu_env,
    )
    (item,) = wait_status("onenode", danlu_env, timeout=300)
    assert item["state"] == "FAILED" and item["nodelist"] == "node[1-2]", item
    restart = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / "onenode").run(0).attempt(1).latest()
    (tag,) = restart.failed_tags()
    bad = re.search(r"\[danlu agent \S+ (\S+)\]", restart.agent_log(tag).read_text()).group(1)
    assert bad in ("node1", "node2"), bad
    again = ["onenode", "--exclude-failed-nodes", "resources.nodes=1", "args.crash_at_step=-1"]
    dry = danlu("rerun", *again, "--dry-run", env=danlu_env, check=True)
    assert re.findall(r"^#SBATCH --exclude=(\S+)$", dry.stdout, re.M) == [bad], dry.stdout
    danlu("rerun", *again, env=danlu_env, check=True)
    (item,) = wait_status("onenode", danlu_env, timeout=300)
    assert item["state"] == "COMPLETED" and item["attempt"] == 2, item
    assert item["nodelist"] == ({"node1", "node2"} - {bad}).pop(), item


TAGGED = """# @package _global_
experiment: tiny_tagged
workdir: ${danlu_examples:}/tiny_dpo
program: train.py
output_arg: output_dir
args:
  max_train_steps: 3
  learning_rate: 1e-5
  crash_at_step: 1
  output_dir: null
env:
  vars:
    RUN_TAG: lr${args.learning_rate}
"""


def test_rerun_composes_from_the_original_configs_and_resolves_interpolations_anew(slurm_cluster, danlu_env, tmp_path):
    """The sweep came from a --config-dir, submitted in another directory: `rerun` (run from elsewhere, without
    --config-dir) composes from the same files, and an interpolation (`RUN_TAG: lr${args.learning_rate}`) takes
    the rerun's new value, as Hydra resolves it after every override. A config dir that is gone is refused."""
    configs = tmp_path / "configs"
    (configs / "experiment").mkdir(parents=True)
    (configs / "experiment" / "tiny_tagged.yaml").write_text(TAGGED)
    there, elsewhere = tmp_path / "there", tmp_path / "elsewhere"
    there.mkdir()
    elsewhere.mkdir()
    first = danlu(
        "submit",
        "--config-dir",
        str(configs),
        "experiment=tiny_tagged",
        "cluster=testcluster",
        "--name",
        "tagged",
        env=danlu_env,
        cwd=there,
        check=True,
    )
    assert "tagged/0" in first.stdout
    (item,) = wait_status("tagged", danlu_env, timeout=300)
    assert item["state"] == "FAILED", item
    shown = json.loads(danlu("show", "tagged/0", "--json", env=danlu_env, check=True).stdout)
    assert "export RUN_TAG=lr1e-05" in shown["script"], shown["script"]
    dry = danlu(
        "rerun",
        "tagged",
        "args.learning_rate=0.5",
        "args.crash_at_step=-1",
        "--dry-run",
        env=danlu_env,
        cwd=elsewhere,
        check=True,
    )
    assert "export RUN_TAG=lr0.5" in dry.stdout and "--learning_rate=0.5" in dry.stdout, dry.stdout
    configs.rename(tmp_path / "moved")
    gone = danlu("rerun", "tagged", "--dry-run", env=danlu_env, cwd=elsewhere)
    assert gone.returncode == 2 and "of the original submit no longer exists" in gone.stderr, gone.stderr
