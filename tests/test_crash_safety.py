"""Issue 7: danlu killed between sbatch accepting a job and the store recording it loses nothing:
the next command finds the job by its comment and records it; nothing is submitted twice."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess

import pytest
from danlu_helpers import danlu, danlu_env, status_json, wait_status  # noqa: F401

pytestmark = pytest.mark.slurm


def _shim(tmp_path, when: str) -> str:
    """An sbatch that kills its caller (danlu) with SIGKILL before or after the real sbatch."""
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    d = tmp_path / "shim"
    d.mkdir()
    out = tmp_path / "sbatch.out"
    body = {"after": f'"{real}" "$@" | tee {out}\nkill -9 $PPID\n', "before": "kill -9 $PPID\nsleep 5\n"}[when]
    (d / "sbatch").write_text("#!/bin/bash\n" + body)
    (d / "sbatch").chmod(0o755)
    return f"{d}:{os.environ['PATH']}"


def _rows(env):
    db = sqlite3.connect(env["DANLU_STORE"])
    return db.execute("SELECT a.run, a.state, a.job_id FROM attempts a").fetchall()


def test_killed_after_sbatch_is_recovered(slurm_cluster, danlu_env, tmp_path):
    env = dict(danlu_env, PATH=_shim(tmp_path, "after"))
    done = danlu(
        "submit",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "--name",
        "crashy",
        "resources.extra_sbatch=[--hold]",
        env=env,
    )
    assert done.returncode == -9, (done.returncode, done.stderr)
    job_id = re.search(r"^(\d+)", (tmp_path / "sbatch.out").read_text(), re.M).group(1)  # sbatch --parsable
    try:
        assert _rows(danlu_env) == [("crashy/0", "SUBMITTING", None)]  # the store knew it was submitting
        items = status_json("crashy", env=danlu_env)  # the next command, with the real sbatch
        assert [(i["run"], i["job_id"], i["state"]) for i in items] == [("crashy/0", job_id, "PENDING")]
        comments = subprocess.run(["squeue", "-h", "-o", "%k"], capture_output=True, text=True, check=True).stdout
        tag = json.loads(danlu("show", "crashy/0", "--json", env=danlu_env, check=True).stdout)["script"]
        token = re.search(r"--comment=danlu:(\S+)", tag).group(1)
        assert comments.split().count(f"danlu:{token}") == 1  # exactly one job: nothing submitted twice
        # and the recovered job really runs: its pickled agent was never moved in place by the dead danlu
        subprocess.run(["scontrol", "release", job_id], check=True)
        (item,) = wait_status("crashy", danlu_env, timeout=300)
        assert item["state"] == "COMPLETED", item
    finally:
        subprocess.run(["scancel", job_id])


def test_killed_before_sbatch_leaves_nothing(slurm_cluster, danlu_env, tmp_path):
    env = dict(danlu_env, PATH=_shim(tmp_path, "before"))
    done = danlu("submit", "experiment=tiny_dpo", "cluster=testcluster", "--name", "early", env=env)
    assert done.returncode == -9
    assert [r[1] for r in _rows(danlu_env)] == ["SUBMITTING"]
    items = status_json(env=danlu_env)
    assert items == []  # never reached Slurm: dropped, not reported
    assert _rows(danlu_env) == []
    again = danlu("submit", "experiment=tiny_dpo", "cluster=testcluster", "--name", "early", "--dry-run", env=danlu_env)
    assert again.returncode == 0  # the name is free again


def test_sbatch_refusing_a_later_job_keeps_store_and_queue_in_step(slurm_cluster, danlu_env):
    """Two jobs (the runs differ in sbatch options); the real sbatch accepts the first and refuses the second.
    The accepted job is queued and recorded, the refused one is neither, and the error says so with a hint."""
    done = danlu(
        "submit",
        "-m",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "--name",
        "halfway",
        "resources.extra_sbatch=[--hold],[--hold,'--begin=not-a-time']",
        env=danlu_env,
    )
    rows = _rows(danlu_env)
    job_ids = [r[2] for r in rows]
    try:
        assert done.returncode == 1, (done.returncode, done.stderr)
        err = done.stderr.strip().splitlines()
        assert len(err) == 2 and err[0].startswith("error: submission failed after 1 run was accepted"), err
        assert "Invalid --begin specification" in err[0]  # sbatch's reason, once, in the error line
        assert err[-1].startswith("hint: the accepted runs stay queued under halfway"), err
        assert [(r[0], r[1]) for r in rows] == [("halfway/0", "PENDING")]
        queued = subprocess.run(
            ["squeue", "-h", "-o", "%i %k", "-j", job_ids[0]], capture_output=True, text=True, check=True
        ).stdout.split()
        assert queued[0] == job_ids[0] and queued[1].startswith("danlu:")
        items = status_json("halfway", env=danlu_env)
        assert [(i["run"], i["state"]) for i in items] == [("halfway/0", "PENDING")]
    finally:
        for job_id in job_ids:
            if job_id:
                subprocess.run(["scancel", job_id])


def test_sbatch_that_queued_the_job_but_timed_out_leaves_it_tracked(slurm_cluster, danlu_env, tmp_path):
    """sbatch reports "Socket timed out" after the controller queued the job (the answer was lost): the run stays
    SUBMITTING, and the next command finds the job by its comment: RUNNING, with the job id Slurm gave it. The
    same error from an sbatch that never reached the controller: the next command forgets the run (it is not
    in Slurm), and nothing is left behind."""
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    lost = "echo 'sbatch: error: Batch job submission failed: Socket timed out on send/recv operation' >&2\nexit 1\n"
    paths = {}
    for name, body in (("queued", f'"{real}" "$@" > {tmp_path}/sbatch.out\n{lost}'), ("never", lost)):
        d = tmp_path / name
        d.mkdir()
        (d / "sbatch").write_text("#!/bin/bash\n" + body)
        (d / "sbatch").chmod(0o755)
        paths[name] = f"{d}:{os.environ['PATH']}"
    long_run = [
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "launch=python",
        "args.max_train_steps=300",
        "args.sleep_per_step=1",
    ]
    job_id = None
    try:
        done = danlu("submit", *long_run, "--name", "lost-answer", env=dict(danlu_env, PATH=paths["queued"]))
        job_id = re.search(r"^(\d+)", (tmp_path / "sbatch.out").read_text(), re.M).group(1)  # sbatch --parsable
        assert done.returncode == 1, (done.returncode, done.stderr)
        err = done.stderr.strip().splitlines()
        assert err[0].startswith("error: sbatch did not say whether it queued job 0 (1 run)"), err
        assert "Socket timed out" in err[0] and err[1].startswith("hint: its runs stay SUBMITTING"), err
        assert _rows(danlu_env) == [("lost-answer/0", "SUBMITTING", None)]
        (item,) = wait_status(
            "lost-answer",
            danlu_env,
            timeout=120,
            poll=2,  # the next commands: the real sbatch
            done=lambda items: items[0]["state"] == "RUNNING",
        )
        assert (item["run"], item["job_id"], item["state"]) == ("lost-answer/0", job_id, "RUNNING"), item
        never = danlu("submit", *long_run, "--name", "not-queued", env=dict(danlu_env, PATH=paths["never"]))
        assert never.returncode == 1 and "did not say whether it queued" in never.stderr, never.stderr
        assert ("not-queued/0", "SUBMITTING", None) in _rows(danlu_env)
        assert [i["run"] for i in status_json(env=danlu_env)] == ["lost-answer/0"]  # looked up, not found: dropped
        assert [r[0] for r in _rows(danlu_env)] == ["lost-answer/0"]
    finally:
        if job_id:
            subprocess.run(["scancel", job_id])
