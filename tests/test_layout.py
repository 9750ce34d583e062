"""The run layout (launcher/layout.py): one place names every file of a run; restarts never share log files."""

from __future__ import annotations

from argparse import Namespace

from launcher.layout import RunLayout, SweepLayout, log_per_task, safe_name
from launcher.views.logs import Layout, _read_new, sources


def test_paths_of_a_sweep_run_attempt_and_restart(tmp_path):
    sweep = SweepLayout(tmp_path / "dpo-1")
    run = sweep.run(3)
    assert run.root == tmp_path / "dpo-1" / "3" and run.sweep == sweep
    assert sweep.script("abc:2") == tmp_path / "dpo-1" / "scripts" / "abc-2.sbatch"
    assert sweep.pickle("abc:2", 7) == tmp_path / "dpo-1" / ".submitit" / "abc-2.7.pkl"
    assert str(sweep.slurm_output_pattern(True)).endswith(".slurm/job-%A_%a.out")
    assert run.slurm_output("51_4") == tmp_path / "dpo-1" / ".slurm" / "job-51_4.out"
    assert run.slurm_output("") is None  # a local run has none: its backend says so (tests/test_backends.py)
    restart = run.attempt(2).restart(1)
    assert restart.root == run.root / "logs" / "attempt-2" / "restart-1"
    assert restart.node_log(0).name == "node0.log" and restart.rank_log(3, stderr=True).name == "rank3.err"
    assert restart.agent_log("rank1").name == "agent-rank1.log"


def test_restarts_in_numeric_order_and_result_round_trip(tmp_path):
    attempt = RunLayout(tmp_path / "r").attempt(1)
    for k in (10, 2, 0):
        attempt.restart(k).root.mkdir(parents=True)
    (attempt.root / "restart-x").mkdir()  # not a restart
    assert [r.number for r in attempt.restarts()] == [0, 2, 10]
    assert attempt.read_result() is None
    attempt.write_result({"exit_code": 0, "restart": 10})
    assert attempt.read_result() == {"exit_code": 0, "restart": 10}


def test_log_per_task_rule():
    assert not log_per_task("accelerate", 1) and not log_per_task("torchrun", 1)
    assert log_per_task("accelerate", 2) and log_per_task("lightning", 1) and log_per_task("python", 1)


def test_safe_names():
    assert safe_name("dpo-beta_1.2") and not safe_name("a b") and not safe_name("") and not safe_name("-x")
    assert not safe_name("x" * 65) and not safe_name("../up")


def test_logs_show_each_stream_restart_after_restart(tmp_path):
    run = RunLayout(tmp_path / "s" / "0")
    attempt = run.attempt(1)
    for k, lines in ((0, ["step=1", "step=2"]), (1, ["resumed from checkpoint step=2", "step=3"])):
        d = attempt.restart(k)
        d.root.mkdir(parents=True)
        d.node_log(0).write_text("".join(f"[default0]:{ln}\n" for ln in lines))
        d.node_log(1).write_text(f"[default0]:node1 restart {k}\n")
        d.agent_log("node0").write_text("agent line\n")
    row = {"run_dir": str(run.root), "job_id": "12", "cluster_kind": "slurm"}
    args = Namespace(err=False, rank=None, node=None)
    srcs = sources(row, attempt, args, Layout(ppn=1, per_task=False))
    assert [s.tag for s in srcs] == ["node0", "node1"]
    assert [p.parent.name for p in srcs[0].paths] == ["restart-0", "restart-1"]
    assert _read_new(srcs, {}, prefix=True) == [
        "[node0 rank0] step=1",
        "[node0 rank0] step=2",
        "[node0 rank0] resumed from checkpoint step=2",
        "[node0 rank0] step=3",
        "[node1 rank1] node1 restart 0",
        "[node1 rank1] node1 restart 1",
    ]
    one = sources(row, attempt, Namespace(err=False, rank=1, node=None), Layout(ppn=1, per_task=False))
    assert _read_new(one, {}, prefix=False) == ["[default0]:node1 restart 0", "[default0]:node1 restart 1"]
    err = sources(row, attempt, Namespace(err=True, rank=None, node=None), Layout())
    assert err[0].paths == [tmp_path / "s" / ".slurm" / "job-12.out"]


def test_merged_view_labels_host_and_rank_and_interleaves_by_time(tmp_path):
    """Rank logs written through the agent's TimedLog (with their time index) come out in the order their lines
    were written, labelled `[host rankR]`; the launcher's copy of its ranks' lines (the tee) is not shown twice."""
    import time

    from launcher.job.timed_log import TimedLog

    run = RunLayout(tmp_path / "s" / "0")
    attempt = run.attempt(1)
    r = attempt.restart(0)
    r.root.mkdir(parents=True)
    for n, host in ((0, "gpu-a"), (1, "gpu-b")):
        r.agent_log(f"node{n}").write_text(
            f"2026-12-01T10:00:00 [danlu agent node{n} {host}] run s/0 attempt 1 "
            f"restart 0: node {n}/2 task {n}/2 head gpu-a port 15000\n"
        )
    logs = {k: TimedLog(r.rank_log(k)) for k in range(4)}
    with TimedLog(r.node_log(0)) as node0, TimedLog(r.node_log(1)):
        node0.write(b"launcher line\n[default0]:copied by the launcher\n")
        order = []
        for step in range(2):
            for k in (3, 1, 0, 2):
                time.sleep(0.02)  # > the index's resolution of 0.01 s
                logs[k].write(f"step={step} rank={k}\n".encode())
                order.append(f"[{'gpu-a' if k < 2 else 'gpu-b'} rank{k}] step={step} rank={k}")
    for log in logs.values():
        log.close()
    srcs = sources(
        {"run_dir": str(run.root), "job_id": "1", "cluster_kind": "slurm"},
        attempt,
        Namespace(err=False, rank=None, node=None),
        Layout(ppn=2, per_task=False),
    )
    assert _read_new(srcs, {}, prefix=True) == ["[gpu-a] launcher line"] + order
    one = sources(
        {"run_dir": str(run.root), "job_id": "1", "cluster_kind": "slurm"},
        attempt,
        Namespace(err=False, rank=2, node=None),
        Layout(ppn=2, per_task=False),
    )
    assert _read_new(one, {}, prefix=False) == ["step=0 rank=2", "step=1 rank=2"]


def test_the_status_fast_path_names_the_same_files_as_the_layout(tmp_path):
    """layout.latest_restart_dirs and RANK0_LOGS (plain strings for `danlu status`) agree with RunLayout's paths."""
    from launcher.layout import RANK0_LOGS, RunLayout, latest_restart_dirs

    files = RunLayout(tmp_path / "0").attempt(2)
    assert latest_restart_dirs(str(tmp_path / "0"), 2) == []
    for k in (0, 1, 10, 2):
        files.restart(k).root.mkdir(parents=True)
    assert latest_restart_dirs(str(tmp_path / "0"), 2) == [str(files.restart(10).root), str(files.restart(2).root)]
    assert latest_restart_dirs(str(tmp_path / "0"), 2, count=5)[-1] == str(files.restart(0).root)
    restart = files.restart(0)
    assert RANK0_LOGS == (restart.rank_log(0).name, restart.node_log(0).name)


def test_a_run_folder_is_missing_until_the_run_starts_and_gone_after(tmp_path):
    """A submit makes only its sweep's folders; the node agents make the run's when it starts. `danlu logs` of a run
    that has not started says so (exit 0); once it has started, a missing run folder was moved or deleted (exit 2)."""
    import os
    import subprocess
    import sys

    from launcher.store import NewRun, Store

    sweep = SweepLayout(tmp_path / "s")
    sweep.root.mkdir()
    store = Store(tmp_path / "store.sqlite")
    run = NewRun(
        run="s/0",
        idx=0,
        overrides=[],
        config={},
        run_dir=str(sweep.run(0).root),
        workdir=str(tmp_path),
        git_commit=None,
        git_dirty=None,
        partition="debug-4090-01",
        nodes=1,
        cluster_kind="slurm",
        script=str(sweep.script("t:0")),
        command="python train.py",
        tag="t:0",
    )
    assert store.create_sweep("s", "tiny_dpo", "testcluster", [], [], str(sweep.root), [run])
    store.record_job("t:0", "999999", False)
    env = dict(os.environ, DANLU_STORE=str(tmp_path / "store.sqlite"), DANLU_HOME=str(tmp_path / "home"))

    def logs() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "launcher.cli", "logs", "s/0"], env=env, capture_output=True, text=True, timeout=60
        )

    pending = logs()
    assert pending.returncode == 0 and "no logs yet for s/0" in pending.stdout + pending.stderr, pending
    with store.tx() as db:  # cancelled while pending: it never started, its folder was never made
        db.execute("UPDATE attempts SET state='CANCELLED', nodelist='None assigned', final=1")
    never = logs()
    assert never.returncode == 0 and "no logs yet for s/0" in never.stdout + never.stderr, never
    for ran in ("nodelist='localhost'", "started=1.0, nodelist='node1'"):  # a local run has no start time
        with store.tx() as db:
            db.execute(f"UPDATE attempts SET state='COMPLETED', {ran}")
        gone = logs()
        assert gone.returncode == 2 and "is gone" in gone.stderr and "hint:" in gone.stderr, (ran, gone)
