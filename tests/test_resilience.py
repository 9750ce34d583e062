"""Issue 7: a run survives its time limit over several starts, resuming from its checkpoints. Preemption and a
dead node, for every launch mode on 2 nodes x 2 ranks: tests/test_fault_matrix.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from danlu_helpers import danlu, danlu_env, submit_json, wait_status  # noqa: F401

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
    """2-minute limit, over 100 s of work, one process: completes over two or more starts, each resuming, each
    logging apart; `danlu logs` merges them. (100 steps of 1 s: at most 90 fit in a start, its start-up and the
    30 s grace aside. A 1-minute limit left a start under load of CI, three clusters busy, no time to train
    after tiny_dpo's imports and reference pretraining. The launch modes on 2 nodes x 2 ranks:
    tests/test_fault_matrix.py.)"""
    interval = 5
    out = submit_json(
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.time=2",
        "requeue.grace_s=30",
        "requeue.max_requeues=8",
        "args.sleep_per_step=1.0",
        "args.max_train_steps=100",
        f"args.checkpointing_steps={interval}",
        "--name",
        "timelimit",
        env=danlu_env,
    )
    run = out["runs"][0]["run"]
    (item,) = wait_status("timelimit", danlu_env, timeout=600, poll=5)
    assert item["state"] == "COMPLETED", item
    assert item["restarts"] >= 1, item  # the requeue count shows in status
    log = danlu("logs", run, env=danlu_env, check=True).stdout
    assert "done steps=100" in log
    assert _assert_progress_never_goes_back_more_than(_steps(log), interval) >= 1
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
    assert "done steps=100" in restarts[-1].node_log(0).read_text()
    assert all("done steps=100" not in r.node_log(0).read_text() for r in restarts[:-1])
    assert sum(len(r.node_log(0).read_text().splitlines()) for r in restarts) <= len(log.splitlines())
