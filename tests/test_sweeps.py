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
    (shim / "sbatch").write_text(f"#!/bin/bash\necho sbatch >> {trace}\nexec {real} \"$@\"\n")
    (shim / "sbatch").chmod(0o755)
    import os

    danlu_env["PATH"] = f"{shim}:{os.environ['PATH']}"
    return trace


def test_sweep_two_crash_rerun_resumes_from_checkpoints(slurm_cluster, danlu_env, sbatch_counter):
    out = submit_json("-m", "experiment=tiny_dpo", "cluster=testcluster", "args.seed=1,2", "args.crash_at_step=-1,7",
                      "args.checkpointing_steps=2", "args.max_train_steps=12", env=danlu_env)
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
    out = submit_json("experiment=tiny_ibq", "cluster=testcluster", "launch=python", "args.max_train_steps=2",
                      "--name", "wandbvars", env=danlu_env)
    (run,) = out["runs"]
    wait_status("wandbvars", danlu_env, timeout=180)
    script = json.loads(danlu("show", run["run"], "--json", env=danlu_env, check=True).stdout)["script"]
    assert "WANDB_RUN_GROUP=wandbvars" in script and "WANDB_NAME=wandbvars/0" in script


def test_two_resource_shapes_make_two_arrays(slurm_cluster, danlu_env, sbatch_counter):
    out = submit_json("-m", "experiment=tiny_dpo", "cluster=testcluster", "resources.nodes=1,2", "args.seed=1,2",
                      "resources.extra_sbatch=[--hold]", env=danlu_env)
    try:
        assert _sbatch_calls(sbatch_counter) == 2
        arrays = {}
        for r in out["runs"]:
            arrays.setdefault(r["job_id"].split("_")[0], []).append(r["run"])
        assert len(arrays) == 2 and sorted(len(v) for v in arrays.values()) == [2, 2]
        q = subprocess.run(["squeue", "-h", "-r", "-o", "%i %D", "-j", ",".join(arrays)], capture_output=True,
                           text=True, check=True).stdout.split("\n")
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
    out = submit_json("-m", "experiment=tiny_dpo", "cluster=testcluster", f"cluster.max_array_size={limit}",
                      f"args.seed=range(0,{n})", "resources.extra_sbatch=[--hold]", env=danlu_env)
    try:
        assert len(out["runs"]) == n
        assert _sbatch_calls(sbatch_counter) == 3  # 4 + 4 + 1
        ids = [r["job_id"] for r in out["runs"]]
        assert len(set(ids)) == n  # every run exactly once
        arrays: dict = {}
        for i in ids:
            arrays.setdefault(i.split("_")[0], []).append(i)
        assert sorted(len(v) for v in arrays.values()) == [1, 4, 4], arrays
        q = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(arrays)], capture_output=True,
                           text=True, check=True).stdout.split()
        assert sorted(q) == sorted(ids)
        items = status_json(out["sweep"], env=danlu_env)
        assert len(items) == n and all(i["state"] == "PENDING" for i in items)
    finally:
        danlu("cancel", out["sweep"], env=danlu_env)
