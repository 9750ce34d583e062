"""danlu killed between sbatch accepting a job and the store recording it loses nothing: the next command finds
the job by its comment and records it; nothing is submitted twice. A run that never reached Slurm is shown
UNSUBMITTED, never forgotten."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from danlu_helpers import REPO, danlu, danlu_env, status_json, wait_status  # noqa: F401
from sshfs_helpers import as_host, mounted

pytestmark = pytest.mark.slurm

shared = pytest.fixture(scope="module", name="shared")(mounted)


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


def test_a_run_never_sent_is_shown_unsubmitted_once_with_a_warning(slurm_cluster, danlu_env, tmp_path):
    """danlu killed before sbatch: the next command says, once, that the run never reached Slurm, and the table
    shows it UNSUBMITTED with the reason; `rerun --state UNSUBMITTED` sends it."""
    env = dict(danlu_env, PATH=_shim(tmp_path, "before"))
    done = danlu("submit", "experiment=tiny_dpo", "cluster=testcluster", "--name", "early", env=env)
    assert done.returncode == -9
    assert [r[1] for r in _rows(danlu_env)] == ["SUBMITTING"]
    first = danlu("status", "--all", "--json", env=danlu_env, check=True)
    said = first.stderr.strip().splitlines()
    assert said[0].startswith("warning: 1 run of early (early/0) never reached Slurm"), said
    assert said[1] == "hint: send them with: danlu rerun early --state UNSUBMITTED", said
    (item,) = json.loads(first.stdout)
    assert (item["run"], item["state"], item["job_id"]) == ("early/0", "UNSUBMITTED", None)
    assert item["reason"].startswith("never sent to Slurm")
    again = danlu("status", "--all", env=danlu_env, check=True)
    assert "warning" not in again.stderr and " NS " in again.stdout  # said once; the table keeps it
    sent = danlu("rerun", "early", "--state", "UNSUBMITTED", env=danlu_env, check=True)
    job_id = sent.stdout.split()[-1]
    try:
        (item,) = wait_status("early", danlu_env, timeout=300)
        assert (item["state"], item["attempt"]) == ("COMPLETED", 2), item
    finally:
        subprocess.run(["scancel", job_id])


def test_a_sweep_killed_between_its_jobs_keeps_every_run(slurm_cluster, danlu_env, tmp_path):
    """Two jobs; the submit is killed after Slurm accepted the first and before it sent the second: the first run
    is tracked, the second is UNSUBMITTED with a warning, none vanishes."""
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    d = tmp_path / "shim"
    d.mkdir()
    count = tmp_path / "calls"
    (d / "sbatch").write_text(
        f'#!/bin/bash\necho >> {count}\nif [ "$(wc -l < {count})" -gt 1 ]; then kill -9 $PPID; sleep 5; fi\n'
        f'exec "{real}" "$@"\n'
    )
    (d / "sbatch").chmod(0o755)
    done = danlu(
        "submit",
        "-m",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "--name",
        "halfsent",
        "resources.extra_sbatch=[--hold],[--hold,'--nice=1']",
        env=dict(danlu_env, PATH=f"{d}:{os.environ['PATH']}"),
    )
    assert done.returncode == -9, done.stderr
    job_ids = [r[2] for r in _rows(danlu_env) if r[2]]
    try:
        shown = danlu("status", "--all", "--json", env=danlu_env, check=True)
        items = sorted((i["run"], i["state"]) for i in json.loads(shown.stdout))
        assert items == [("halfsent/0", "PENDING"), ("halfsent/1", "UNSUBMITTED")], items
        assert "warning: 1 run of halfsent (halfsent/1) never reached Slurm" in shown.stderr
    finally:
        subprocess.run(["scancel", *job_ids])


def test_without_slurm_commands_recovery_keeps_runs_submitting(slurm_cluster, danlu_env, tmp_path):
    """squeue and sacct missing from this shell's PATH is not "Slurm has no such job": the run of a job sbatch
    accepted stays SUBMITTING, with a warning naming why, until a shell with Slurm finds and records it."""
    env = dict(danlu_env, PATH=_shim(tmp_path, "after"))
    done = danlu("submit", "experiment=tiny_dpo", "cluster=testcluster", "--name", "nopath", env=env)
    assert done.returncode == -9, done.stderr
    job_id = re.search(r"^(\d+)", (tmp_path / "sbatch.out").read_text(), re.M).group(1)
    try:
        blind = danlu("status", "--all", "--json", env=dict(danlu_env, PATH="/nonexistent"), check=True)
        assert [(i["run"], i["state"]) for i in json.loads(blind.stdout)] == [("nopath/0", "SUBMITTING")]
        said = blind.stderr.strip().splitlines()
        assert said[0].startswith("warning: 1 run (nopath/0) stay SUBMITTING") and "not found" in said[0], said
        assert said[1].startswith("hint: run danlu where Slurm's commands answer"), said
        items = status_json("nopath", env=danlu_env)
        assert [(i["run"], i["job_id"]) for i in items] == [("nopath/0", job_id)]
    finally:
        subprocess.run(["scancel", job_id])


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
    same error from an sbatch that never reached the controller: the next command shows the run UNSUBMITTED (it
    is not in Slurm)."""
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
        items = status_json(env=danlu_env)  # looked up, not found: never sent
        assert sorted((i["run"], i["state"]) for i in items) == [
            ("lost-answer/0", "RUNNING"),
            ("not-queued/0", "UNSUBMITTED"),
        ]
    finally:
        if job_id:
            subprocess.run(["scancel", job_id])


def test_a_submit_stopped_too_long_on_another_host_withdraws_its_job(slurm_cluster, danlu_env, shared, tmp_path):
    """A submit on login2 is stopped (Ctrl-Z, a frozen ssh session) right before sbatch, past the time its
    heartbeat proves it alive. A status on this host takes it for dead and marks its run UNSUBMITTED. When the
    submit resumes, its sbatch queues the job: the store no longer waits for it, so the submit withdraws the job
    and says so, and store and queue agree."""
    folder = shared.mounts[0] / "stopped"
    folder.mkdir()
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    shim = tmp_path / "shim"
    shim.mkdir()
    at_sbatch, go, out = tmp_path / "at-sbatch", tmp_path / "go", tmp_path / "sbatch.out"
    (shim / "sbatch").write_text(
        f'#!/bin/bash\ntouch {at_sbatch}\nwhile [ ! -e {go} ]; do sleep 0.1; done\n"{real}" "$@" | tee {out}\n'
    )
    (shim / "sbatch").chmod(0o755)
    login2 = {
        **os.environ,
        **danlu_env,
        "DANLU_STORE": str(folder / "store.sqlite"),
        "PATH": f"{shim}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
    }
    submit = subprocess.Popen(
        as_host(
            "login2",
            [
                sys.executable,
                "-m",
                "launcher.cli",
                "submit",
                "experiment=tiny_dpo",
                "cluster=testcluster",
                "--name",
                "stopped",
                "resources.extra_sbatch=[--hold]",
            ],
        ),
        env=login2,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    job_id = None
    try:
        deadline = time.monotonic() + 120
        while not at_sbatch.exists():
            assert submit.poll() is None and time.monotonic() < deadline, submit.communicate()
            time.sleep(0.1)
        os.kill(submit.pid, signal.SIGSTOP)
        (token_lock,) = (folder / "locks").iterdir()
        old = time.time() - 3600
        os.utime(token_lock, (old, old))  # its heartbeat stopped an hour ago
        here = dict(danlu_env, DANLU_STORE=str(shared.mounts[1] / "stopped" / "store.sqlite"))
        seen = danlu("status", "--all", "--json", env=here, check=True)
        assert [(i["run"], i["state"]) for i in json.loads(seen.stdout)] == [("stopped/0", "UNSUBMITTED")]
        os.kill(submit.pid, signal.SIGCONT)
        go.touch()
        _, err = submit.communicate(timeout=120)
        job_id = re.search(r"^(\d+)", out.read_text(), re.M).group(1)
        said = err.strip().splitlines()
        assert submit.returncode == 1, err
        assert said[0].startswith("error: this submit was stopped too long") and f"job {job_id}" in said[0], said
        assert said[1] == "hint: send them with: danlu rerun stopped --state UNSUBMITTED", said
        queue = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout
        assert queue.strip() in ("", "CANCELLED"), queue
        items = status_json(env=here)
        assert [(i["run"], i["state"]) for i in items] == [("stopped/0", "UNSUBMITTED")]
    finally:
        if submit.poll() is None:
            os.kill(submit.pid, signal.SIGCONT)
            submit.kill()
        if job_id:
            subprocess.run(["scancel", job_id])
