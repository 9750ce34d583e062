"""Issue 7: runs survive time limits, preemption and dead nodes, resuming from their checkpoints."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from danlu_helpers import danlu, danlu_env, status_json, submit_json, wait_status  # noqa: F401

pytestmark = pytest.mark.slurm


def _steps(log: str) -> list[tuple[str, int]]:
    """('resume', step) and ('step', step) events of rank 0, in order."""
    events = []
    for line in log.splitlines():
        m = re.search(r"resumed from checkpoint step=(\d+)", line)
        if m:
            events.append(("resume", int(m.group(1))))
        m = re.search(r"\bstep=(\d+) loss=.* rank=0\b", line)
        if m:
            events.append(("step", int(m.group(1))))
    return events


def _assert_progress_never_goes_back_more_than(events, interval):
    last = 0
    resumes = 0
    for kind, step in events:
        if kind == "resume":
            resumes += 1
            assert step >= last - interval, f"resumed at {step} after reaching {last}"
            last = step
        else:
            last = max(last, step)
    return resumes


def test_time_limit_requeues_and_resumes_until_done(slurm_cluster, danlu_env):
    """1-minute limit, ~3 minutes of work: completes over several attempts, each resuming. (110 steps: ~30 fit
    in each start, so the last start ends well before a warning; a program still tearing down when the warning
    comes is requeued once more, see the README.)"""
    interval = 5
    out = submit_json("experiment=tiny_dpo", "cluster=testcluster", "resources.time=1", "requeue.grace_s=20",
                      "requeue.max_requeues=8", "args.sleep_per_step=1.0", "args.max_train_steps=110",
                      f"args.checkpointing_steps={interval}", "--name", "timelimit", env=danlu_env)
    run = out["runs"][0]["run"]
    (item,) = wait_status("timelimit", danlu_env, timeout=600, poll=5)
    assert item["state"] == "COMPLETED", item
    assert item["restarts"] >= 2, item  # the requeue count shows in status
    log = danlu("logs", run, env=danlu_env, check=True).stdout
    assert "done steps=110" in log
    assert _assert_progress_never_goes_back_more_than(_steps(log), interval) >= 2
    assert "exiting for requeue" in log
    # every start of the attempt logged into files of its own (launcher/layout.py), none written over
    from launcher.layout import SweepLayout

    attempt = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / "timelimit").run(0).attempt(1)
    restarts = attempt.restarts()
    assert [r.number for r in restarts] == list(range(item["restarts"] + 1)), restarts
    for r in restarts:
        text = r.node_log(0).read_text()
        assert "step=" in text, (r.root, text[-500:])
        agent = r.agent_log("node0").read_text()
        assert f"restart {r.number}:" in agent, agent
    assert "done steps=110" in restarts[-1].node_log(0).read_text()
    assert all("done steps=110" not in r.node_log(0).read_text() for r in restarts[:-1])
    assert sum(len(r.node_log(0).read_text().splitlines()) for r in restarts) <= len(log.splitlines())


def _wait_running(sweep, env, timeout=120):
    return wait_status(sweep, env, timeout=timeout, done=lambda items: all(i["state"] == "RUNNING" for i in items))


@pytest.mark.disruptive  # preempts, kills a node or stops slurmdbd: run alone (tests/run.sh)
def test_preempted_run_is_requeued_and_completes(slurm_cluster, danlu_env):
    out = submit_json("experiment=tiny_dpo", "cluster=testcluster", "resources.gpus_per_node=4",
                      "resources.exclude=node1", "args.sleep_per_step=0.5", "args.max_train_steps=60",
                      "args.checkpointing_steps=5", "--name", "victim", env=danlu_env)
    run = out["runs"][0]["run"]
    _wait_running("victim", danlu_env)
    deadline = time.time() + 90
    while time.time() < deadline:  # let it train past a checkpoint
        log = danlu("logs", run, env=danlu_env).stdout
        if re.search(r"step=1[0-9] loss", log):
            break
        time.sleep(2)
    urgent = subprocess.run(["sbatch", "--parsable", "-p", "urgent-4090", "-w", "node2", "--gres=gpu:rtx4090:4",
                             "-t", "2", "-o", "/dev/null", "--wrap", "sleep 8"], capture_output=True, text=True, check=True).stdout.strip()
    try:
        (item,) = wait_status("victim", danlu_env, timeout=300, poll=3)
    finally:
        subprocess.run(["scancel", urgent])
    assert item["state"] == "COMPLETED", item
    assert item["restarts"] >= 1, item
    log = danlu("logs", run, env=danlu_env, check=True).stdout
    assert re.search(r"resumed from checkpoint step=\d+", log), log[-3000:]
    assert "done steps=60" in log


def _crash_node(slurm_cluster, node: str, job_id: str) -> None:
    """The node dies: its slurmd and everything the job runs there (the step daemon and its tasks).

    All test nodes share this host, so the node's processes are found by SLURMD_NODENAME."""
    slurm_cluster.node("kill", node)
    victims = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            env = dict(kv.split("=", 1) for kv in environ.read_bytes().decode(errors="replace").split("\0") if "=" in kv)
        except OSError:
            continue
        if env.get("SLURMD_NODENAME") == node and env.get("SLURM_JOB_ID") == job_id:
            pid = int(environ.parent.name)
            victims.add(pid)
            try:
                ppid = int((environ.parent / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if "slurmstepd" in (Path("/proc") / str(ppid) / "cmdline").read_text():
                    victims.add(ppid)
            except (OSError, ValueError):
                pass
    assert victims, f"no processes of job {job_id} on {node}"
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.disruptive  # preempts, kills a node or stops slurmdbd: run alone (tests/run.sh)
def test_dead_node_ends_or_requeues_and_run_completes_from_checkpoint(slurm_cluster, danlu_env):
    out = submit_json("experiment=tiny_dpo", "cluster=testcluster", "resources.nodes=2", "resources.gpus_per_node=1",
                      "args.sleep_per_step=0.5", "args.max_train_steps=80", "args.checkpointing_steps=5",
                      "--name", "nodefail", env=danlu_env)
    run, job_id = out["runs"][0]["run"], out["runs"][0]["job_id"]
    _wait_running("nodefail", danlu_env)
    deadline = time.time() + 120
    while time.time() < deadline and not re.search(r"step=1[0-9] loss", danlu("logs", run, env=danlu_env).stdout):
        time.sleep(1)
    _crash_node(slurm_cluster, "node2", job_id)
    try:
        # Slurm notices within SlurmdTimeout: the job ends (NODE_FAIL) or Slurm requeues it
        item = wait_status("nodefail", danlu_env, timeout=180, poll=3,
                           done=lambda items: items[0]["state"] != "RUNNING" or items[0]["restarts"] > 0)[0]
        first = dict(item)
    finally:
        slurm_cluster.node("start", "node2")
    assert first["state"] != "COMPLETED", first  # the dead node stopped the run
    # Slurm's own requeue may bring it back; otherwise `danlu rerun` does (the documented path)
    for _ in range(3):
        (item,) = wait_status("nodefail", danlu_env, timeout=300, poll=3)
        if item["state"] == "COMPLETED":
            break
        rerun = danlu("rerun", "nodefail", env=danlu_env)
        assert rerun.returncode == 0, rerun.stderr
    assert item["state"] == "COMPLETED", (first, item)
    log = danlu("logs", run, "--attempt", "1", env=danlu_env, check=True).stdout + \
        (danlu("logs", run, env=danlu_env, check=True).stdout if item["attempt"] > 1 else "")
    assert re.search(r"resumed from checkpoint step=(1\d|[2-9]\d)", log), log[-3000:]
    assert "done steps=80" in log

