"""Signals inside the job, on real launchers with more than one rank: SIGTERM reaches every rank behind torch
elastic as its checkpoint signal and the program gets the cluster's grace, a warning during teardown is ignored,
a stop that reaches one node only is requeued, and no process of the job is left behind. (The time-limit signal
on every rank of every launch mode, 2x2: tests/test_fault_matrix.py.)"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from danlu_helpers import danlu, danlu_env, submit_json, wait_status  # noqa: F401

pytestmark = pytest.mark.slurm


def _job_processes(marker: str) -> list[str]:
    """Processes on this machine (every test node is this machine) whose command line holds `marker`."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if marker in ln and "ps -eo" not in ln]


def test_cancel_gives_the_ranks_the_clusters_grace_to_checkpoint(slurm_cluster, danlu_env):
    """scancel: the stop reaches each rank behind torch elastic (as its checkpoint signal), and the program may use the
    cluster's KillWait (15 s on the test cluster, read at submit) to write a checkpoint that takes 6 s; nothing is left
    running."""
    from launcher import slurm
    from launcher.layout import SweepLayout

    grace = slurm.stop_grace("debug-4090-01")
    assert grace is not None and grace >= 10, grace  # the cluster's, not a constant of danlu's
    name = "cancel-grace"
    out = submit_json(
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.gpus_per_node=2",
        "args.sleep_per_step=1.0",
        "args.max_train_steps=300",
        "args.checkpointing_steps=1000",
        "+args.checkpoint_seconds=6",
        "+args.pretrain_steps=20",
        "--name",
        name,
        env=danlu_env,
    )
    run = out["runs"][0]["run"]
    layout = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0)
    log = layout.attempt(1).restart(0).node_log(0)
    wait_status(name, danlu_env, timeout=600, poll=2, started=True)
    deadline = time.time() + 180  # from the start of the job: it may wait behind other tests' jobs for the GPUs
    while not (log.exists() and "step=3 " in log.read_text()):
        assert time.time() < deadline, log.read_text()[-2000:] if log.exists() else "no log"
        time.sleep(1)
    assert danlu("cancel", run, env=danlu_env).returncode == 0
    (item,) = wait_status(name, danlu_env, timeout=120)
    assert item["state"] == "CANCELLED", item
    agent_log = layout.attempt(1).restart(0).agent_log("node0")
    deadline = time.time() + grace + 30  # the job goes on for up to its grace after the cancel
    while "] exit code " not in agent_log.read_text():
        assert time.time() < deadline, agent_log.read_text()
        time.sleep(1)
    text = log.read_text()
    agent = agent_log.read_text()
    assert f"SIGKILL for what is left in {grace - 2}s (the cluster gives {grace}s)" in agent, agent
    # the ranks catch SIGUSR1 (their checkpoint signal): they get it for the cancel too, and agree on a step
    assert "sending SIGUSR1 (their checkpoint signal) to each of the 2 training processes" in agent, agent
    # torch elastic stops copying its ranks' output into the node log once it is told to stop: the ranks' own
    # logs (collected by the agent) have all of it
    ranks = [layout.attempt(1).restart(0).rank_log(r).read_text() for r in (0, 1)]
    for rank in (0, 1):
        # Slurm also sends SIGTERM to every process of the step itself: whichever comes first is the rank's stop
        assert re.search(rf"signal SIG(USR1|TERM) reached rank={rank}", ranks[rank]), ranks[rank][-2000:]
    saved = re.search(r"received signal SIG(?:USR1|TERM) at step=(\d+); checkpoint saved", ranks[0])
    assert saved, (ranks[0][-2000:], text[-1000:])
    assert (layout.output_dir / "checkpoints" / f"step_{saved.group(1)}.pt").exists()
    deadline = time.time() + 30
    while _job_processes(str(layout.output_dir)) and time.time() < deadline:
        time.sleep(1)
    assert _job_processes(str(layout.output_dir)) == []


def test_warning_while_the_program_tears_down_after_its_last_step_is_ignored(slurm_cluster, danlu_env):
    """The last step is done and the program takes 110 s to end (a slow teardown or upload) when the time-limit
    warning comes: the program has put its signal handlers back (as Lightning does when fit returns), the
    agent reads that from the process table, sends nothing and requeues nothing: COMPLETED, never run again.
    (Its 3 steps of 0.5 s hold the handlers for 1.5 s or more, long enough for the agent to have seen them.
    They end 10 s after the start on an idle machine, 100 s under CI's load: the warning comes at 110 s
    (limit 240 s, grace 130 s), inside the teardown for either, and the program ends 20-130 s before the limit.
    A 2-minute limit with a 60 s teardown left no slack at all.)"""
    from launcher.layout import SweepLayout

    name = "teardown-warn"
    submit_json(
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.time=4",
        "requeue.grace_s=130",
        "args.max_train_steps=3",
        "+args.pretrain_steps=20",
        "args.sleep_per_step=0.5",
        "+args.teardown_seconds=110",
        "--name",
        name,
        env=danlu_env,
    )
    # it may wait behind other tests' jobs for the GPUs: the clock starts when it starts
    wait_status(name, danlu_env, timeout=600, poll=2, started=True)
    (item,) = wait_status(name, danlu_env, timeout=420, poll=3)
    restarts = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0).attempt(1).restarts()
    agent = restarts[0].agent_log("node0").read_text()
    assert item["state"] == "COMPLETED" and item["restarts"] == 0 and len(restarts) == 1, (item, agent)
    assert "ignored, the program is finishing (its training processes have put back their signal handlers)" in agent, (
        agent
    )
    assert "sending SIG" not in agent, agent
    assert "done steps=3" in restarts[0].node_log(0).read_text()


def test_a_stop_signal_that_reaches_one_node_only_requeues_the_run(slurm_cluster, danlu_env):
    """SIGCONT + SIGTERM to node2's processes only, while Slurm keeps the job running: what slurmctld's retry of
    a kill meant for a job's earlier start does to its next start on a node that died and came back (seen in the
    fault matrix's dead-node case). node2's ranks checkpoint, node1's stop with them at the agreed step and exit
    0: task 0 finds a stopped peer, no failed one and the job RUNNING, and requeues. The run resumes and
    completes: never COMPLETED at the signal, never FAILED."""
    import os
    import signal

    from slurm_helpers import node_processes

    from launcher.layout import SweepLayout

    name = "stray-stop"
    out = submit_json(
        "experiment=tiny_dpo",
        "launch=python",
        "cluster=testcluster",
        "resources.nodes=2",
        "args.sleep_per_step=0.5",
        "args.max_train_steps=40",
        "args.checkpointing_steps=10",
        "+args.pretrain_steps=20",
        "--name",
        name,
        env=danlu_env,
    )
    job = out["runs"][0]["job_id"]
    attempt = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0).attempt(1)
    wait_status(name, danlu_env, timeout=600, poll=2, started=True)
    deadline = time.time() + 180  # from the start of the job (it may wait behind other tests' jobs)
    log = attempt.restart(0).rank_log(0)
    while not (log.exists() and re.search(r"^step=12 ", log.read_text(), re.M)):
        assert time.time() < deadline, log.read_text()[-2000:] if log.exists() else "no log"
        time.sleep(0.5)
    victims = node_processes("node2", [job])
    assert victims, "no process of the job on node2"
    for pid in victims:
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    (item,) = wait_status(name, danlu_env, timeout=300, poll=3)
    restarts = attempt.restarts()
    agent0 = restarts[0].agent_log("rank0").read_text()
    assert item["state"] == "COMPLETED" and item["restarts"] == 1 and len(restarts) == 2, (item, agent0)
    # task 0 finds the stop once its own ranks have stopped at the agreed step, or (first) in node2's stopped-*
    # file, and then stops them itself: either way it asks Slurm, finds the job RUNNING, and requeues it
    assert (
        "while Slurm kept the job running" in agent0 and "requeueing it" in agent0
    ) or "another task's ranks were stopped by a signal" in agent0, agent0
    assert re.search(r"^requeue of job \d+: ok$", agent0, re.M), agent0
    first, second = (r.rank_log(0).read_text() for r in restarts)
    saved = re.search(r"received signal SIG\w+ at step=(\d+); checkpoint saved", first)
    assert saved and "done steps" not in first, first[-2000:]
    assert f"resumed from checkpoint step={saved.group(1)} " in second and "done steps=40" in second, second[-2000:]


@pytest.mark.disruptive  # gives the partition a GraceTime and preempts every job on node1-2: run alone
def test_a_preemption_with_grace_time_warns_the_ranks_at_once(slurm_cluster, danlu_env):
    """Where a preempted job gets its --signal at once and a GraceTime to stop (PreemptParameters=send_user_signal,
    as on the test cluster), the warning comes long before the job's time limit. The agent asks Slurm, sees the
    job selected for preemption, and tells the ranks to checkpoint then, within the grace, not at the SIGTERM that
    ends it; the run starts again from that checkpoint and completes."""
    from launcher.layout import SweepLayout

    partition = "debug-4090-01"
    subprocess.run(["scontrol", "update", f"PartitionName={partition}", "GraceTime=60"], check=True)
    urgent = None
    try:
        name = "graced"
        submit_json(
            "experiment=tiny_dpo",
            "cluster=testcluster",
            "resources.time=30",
            "args.sleep_per_step=0.5",
            "args.max_train_steps=120",
            "args.checkpointing_steps=1000",
            "+args.pretrain_steps=5",
            "--name",
            name,
            env=danlu_env,
        )
        layout = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0)
        first = layout.attempt(1).restart(0)
        wait_status(name, danlu_env, timeout=600, poll=2, started=True)
        deadline = time.time() + 180
        while not (first.node_log(0).exists() and "step=5 " in first.node_log(0).read_text()):
            assert time.time() < deadline, first.node_log(0).read_text()[-2000:] if first.node_log(0).exists() else ""
            time.sleep(1)
        preempted = time.time()
        urgent = subprocess.run(
            ["sbatch", "--parsable", "-p", "urgent-4090", "-N", "2", "-w", "node[1-2]", "--exclusive", "-t", "2",
             "-o", "/dev/null", "--wrap", "sleep 5"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        agent_log = first.agent_log("node0")
        # the --signal, or (22.05, some preemptions: seen on the test cluster) SIGTERM at once; before the fix the
        # --signal was taken for an early time-limit warning and the ranks heard nothing until the grace was over
        told = ("the job is being preempted", "received SIGTERM: sending SIGUSR1")
        deadline = time.time() + 50  # inside the 60 s grace
        while not any(t in (agent_log.read_text() if agent_log.exists() else "") for t in told):
            assert time.time() < deadline, agent_log.read_text() if agent_log.exists() else "no agent log"
            time.sleep(0.5)
        assert time.time() - preempted < 30
        (item,) = wait_status(name, danlu_env, timeout=600, poll=3)
        restarts = layout.attempt(1).restarts()
        # one start more, from the checkpoint: Slurm requeues the preempted job, and danlu does not add its own
        assert item["state"] == "COMPLETED" and len(restarts) == 2, (item, [r.root.name for r in restarts])
        # where Slurm's SIGTERM reaches the ranks themselves (22.05), it may come before the agent's SIGUSR1
        saved = re.search(
            r"received signal SIG(?:USR1|TERM) at step=(\d+); checkpoint saved", first.node_log(0).read_text()
        )
        assert saved, first.node_log(0).read_text()[-2000:]
        resumed = restarts[1].node_log(0).read_text()
        assert f"resumed from checkpoint step={saved.group(1)} rank=0" in resumed, resumed[-2000:]
    finally:
        subprocess.run(["scontrol", "update", f"PartitionName={partition}", "GraceTime=0"])
        if urgent:
            subprocess.run(["scancel", urgent])
