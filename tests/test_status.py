"""Issue 5 on the real test cluster: `danlu status`, `logs`, `cancel`, `show`, one sacct (+ one
squeue) per refresh, and status without slurmdbd. Other sessions use the cluster at the same time:
nothing here assumes an empty queue."""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from danlu_helpers import danlu, danlu_env, status_json, submit_json, wait_status  # noqa: F401

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parent.parent
HEADER = ["RUN", "JOBID", "PARTITION", "NAME", "ST", "TIME", "NODES", "ATT", "NODELIST(REASON)"]


def traced(env: dict, tmp_path: Path, name: str) -> tuple[dict, Path]:
    trace = tmp_path / f"{name}.trace"
    trace.unlink(missing_ok=True)
    return dict(env, DANLU_TRACE_SLURM=str(trace)), trace


def calls(trace: Path) -> list[str]:
    return trace.read_text().split() if trace.exists() else []


def in_squeue(job_ids: list[str]) -> list[str]:
    """Which of these jobs (or array tasks) squeue still lists, in any state."""
    ids = sorted({j.split("_")[0] for j in job_ids})
    done = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-o", "%i", "-j", ",".join(ids)], capture_output=True, text=True
    )
    listed = set(done.stdout.split()) if done.returncode == 0 else set()
    return [j for j in job_ids if j in listed]


# ---- runs that must age before the slurmdbd test (submitted when this module starts) ------------
@pytest.fixture(scope="module", autouse=True)
def aged(slurm_cluster, tmp_path_factory):
    """Runs for test_status_without_slurmdbd, submitted first so that by the time that test runs
    the finished ones have left the controller (MinJobAge): their store rows still say PENDING,
    as for a researcher who did not look while they ran."""
    home = tmp_path_factory.mktemp("aged")
    env = {
        "DANLU_HOME": str(home / "h"),
        "DANLU_RUNS_DIR": str(home / "runs"),
        "DANLU_STORE": str(home / "h" / "store.sqlite"),
        "NO_COLOR": "1",
    }
    fast = ["experiment=tiny_dpo", "cluster=testcluster", "launch=python", "args.max_train_steps=2"]
    held = submit_json(
        "experiment=tiny_dpo", "cluster=testcluster", "resources.extra_sbatch=[--hold]", "--name", "aged-held", env=env
    )
    ok = submit_json(*fast, "--name", "aged-ok", env=env)
    crash = submit_json(*fast, "args.crash_at_step=1", "--name", "aged-crash", env=env)
    gone = submit_json(
        "experiment=tiny_dpo", "cluster=testcluster", "resources.extra_sbatch=[--hold]", "--name", "aged-gone", env=env
    )
    subprocess.run(["scancel", gone["runs"][0]["job_id"]], check=True)  # cancelled behind danlu's back
    # a danlu killed right after sbatch accepted its job: the store only knows it was submitting
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    shim = home / "shim"
    shim.mkdir()
    (shim / "sbatch").write_text(f'#!/bin/bash\n"{real}" "$@" | tee {home}/sbatch.out\nkill -9 $PPID\n')
    (shim / "sbatch").chmod(0o755)
    killed = danlu(
        "submit",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.extra_sbatch=[--hold]",
        "--name",
        "aged-lost",
        env=dict(env, PATH=f"{shim}:{os.environ['PATH']}"),
    )
    assert killed.returncode == -9, killed.stderr
    lost = re.search(r"^(\d+)", (home / "sbatch.out").read_text(), re.M).group(1)  # sbatch --parsable
    subprocess.run(["scancel", lost], check=True)  # and it ended before anyone looked
    yield {
        "env": env,
        "held": held["runs"][0],
        "ok": ok["runs"][0],
        "crash": crash["runs"][0],
        "gone": gone["runs"][0],
        "lost": lost,
        "started": time.time(),
    }
    danlu("cancel", "aged-held", env=env)


# ---- status: table, filters, json, pending reasons; cancel of pending runs -----------------------
def test_status_pending_reasons_filters_json_and_cancel(danlu_env, tmp_path):
    held = submit_json(
        "-m",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "args.seed=0,1",
        "resources.extra_sbatch=[--hold]",
        "--name",
        "held",
        env=danlu_env,
    )
    later = submit_json(
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.extra_sbatch=['--begin=now+1hour']",
        "--name",
        "later",
        env=danlu_env,
    )
    try:
        items = status_json(env=danlu_env)
        by_run = {i["run"]: i for i in items}
        assert sorted(by_run) == ["held/0", "held/1", "later/0"]
        for key in ("run", "sweep", "job_id", "state", "reason", "nodes", "partition", "elapsed", "attempt"):
            assert all(key in i for i in items), key
        assert by_run["held/1"]["job_id"] == held["runs"][1]["job_id"] and by_run["held/1"]["job_id"].endswith("_1")
        assert by_run["held/0"]["state"] == "PENDING" and by_run["held/0"]["reason"] == "JobHeldUser"
        assert by_run["later/0"]["state"] == "PENDING" and by_run["later/0"]["reason"] == "BeginTime"
        assert by_run["later/0"]["partition"] == "debug-4090-01" and by_run["later/0"]["nodes"] == 1
        assert by_run["later/0"]["attempt"] == 1 and by_run["later/0"]["sweep"] == "later"

        table = danlu("status", env=danlu_env, check=True).stdout.splitlines()
        header = next(line for line in table if line.startswith("RUN"))
        assert header.split() == HEADER
        row = next(line for line in table if line.startswith("later/0"))
        assert row.split() == [
            "later/0",
            later["runs"][0]["job_id"],
            "debug-4090-01",
            "later/0",  # the job's name, as squeue shows it (a job of one run: the run id)
            "PD",
            "0:00",
            "1",
            "1",
            "(BeginTime)",
        ]
        assert "# held: 2 PENDING" in table
        held_row = next(line for line in table if line.startswith("held/1"))
        assert held_row.split()[3] == "held"  # an array's tasks: its sweep
        squeue = subprocess.run(
            ["squeue", "-h", "-j", later["runs"][0]["job_id"], "-o", "%j"], capture_output=True, text=True
        )
        assert squeue.stdout.strip() in ("", "later/0"), squeue.stdout  # the name Slurm has for the job

        # filters: by sweep, by run, by state
        assert [i["run"] for i in json.loads(danlu("status", "held", "--json", env=danlu_env, check=True).stdout)] == [
            "held/0",
            "held/1",
        ]
        assert [
            i["run"] for i in json.loads(danlu("status", "held/1", "later", "--json", env=danlu_env, check=True).stdout)
        ] == ["held/1", "later/0"]
        assert json.loads(danlu("status", "--state", "RUNNING", "--json", env=danlu_env, check=True).stdout) == []
        bad = danlu("status", "nosuch/7", env=danlu_env)
        assert bad.returncode == 2 and "hint:" in bad.stderr
        bad = danlu("status", "--state", "SLEEPING", env=danlu_env)
        assert bad.returncode == 2 and "hint:" in bad.stderr

        # cancel one run of the array: scancel, the store and status say so; the other task stays queued
        env, trace = traced(danlu_env, tmp_path, "cancel")
        done = danlu("cancel", "held/0", env=env, check=True)
        assert calls(trace).count("scancel") == 1
        assert done.stdout.split() == ["held/0", held["runs"][0]["job_id"], "CANCELLED"]
        assert in_squeue([held["runs"][0]["job_id"]]) == [] or subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%T", "-j", held["runs"][0]["job_id"]], capture_output=True, text=True
        ).stdout.split() == ["CANCELLED"]
        store = __import__("sqlite3").connect(danlu_env["DANLU_STORE"])
        assert store.execute("SELECT state FROM attempts WHERE run='held/0'").fetchone()[0] == "CANCELLED"
        by_run = {i["run"]: i for i in status_json(env=danlu_env)}
        assert by_run["held/0"]["state"] == "CANCELLED" and by_run["held/0"]["reason"].startswith("cancelled by ")
        assert by_run["held/1"]["state"] == "PENDING"
        # active runs by default, finished ones with --all or --state
        default = json.loads(danlu("status", "--json", env=danlu_env, check=True).stdout)
        assert sorted(i["run"] for i in default) == ["held/1", "later/0"]
        assert [
            i["run"]
            for i in json.loads(danlu("status", "--state", "CANCELLED", "--json", env=danlu_env, check=True).stdout)
        ] == ["held/0"]
        assert [
            i["run"]
            for i in json.loads(danlu("status", "--state", "CA,PD", "--json", env=danlu_env, check=True).stdout)
        ] == ["held/0", "held/1", "later/0"]

        # cancelling what already ended: exit 0, a message, and no scancel at all
        env, trace = traced(danlu_env, tmp_path, "again")
        again = danlu("cancel", "held/0", env=env)
        assert again.returncode == 0 and "nothing to cancel" in again.stderr and again.stdout == ""
        assert "scancel" not in calls(trace)
    finally:
        danlu("cancel", "held", "later", env=danlu_env)
    assert {i["state"] for i in status_json(env=danlu_env)} == {"CANCELLED"}


# ---- a failing 2-node run: its reason, its logs, show -------------------------------------------
INFRA = ("task launch failed", "node failure")  # other sessions stop nodes on purpose; not this test's subject


def test_failed_two_node_run_reason_logs_and_show(danlu_env):
    for name in ("crash", "crash-again"):
        out = submit_json(
            "experiment=tiny_dpo",
            "cluster=testcluster",
            "resources.nodes=2",
            "resources.gpus_per_node=2",
            "args.crash_at_step=3",
            "args.crash_rank=1",
            "args.max_train_steps=8",
            "args.sleep_per_step=0.3",
            "--name",
            name,
            env=danlu_env,
        )
        run, job_id = out["runs"][0]["run"], out["runs"][0]["job_id"]
        # --follow streams the merged logs and ends by itself when the run ends
        follow = danlu("logs", run, "--follow", env=danlu_env, timeout=300)
        assert follow.returncode == 0, follow.stderr
        assert re.search(rf"\({run} ended: [A-Z_]+\)", follow.stderr), follow.stderr
        (item,) = status_json(run, env=danlu_env)
        if not item["reason"].startswith(INFRA):
            break
        print(f"\n{run} hit a node problem ({item['reason']}); once more")
    assert f"({run} ended: FAILED)" in follow.stderr
    assert item["state"] == "FAILED" and item["reason"] == "RuntimeError: injected crash at step 3 on rank 1", item
    assert item["job_id"] == job_id and item["nodes"] == 2 and item["nodelist"] == "node[1-2]"
    table = danlu("status", "--all", run, env=danlu_env, check=True).stdout
    assert "(RuntimeError: injected crash at step 3 on rank 1)" in table and " F " in table

    merged = follow.stdout.splitlines()
    # labelled with the host and the global rank (the test cluster's hosts are node1, node2)
    for prefix in ("[node1 rank0] ", "[node1 rank1] ", "[node2 rank2] ", "[node2 rank3] "):
        assert any(line.startswith(prefix + "rank=") for line in merged), prefix
    assert any(line.startswith("[node1 rank1] [rank1]: RuntimeError: injected crash") for line in merged), merged
    assert not any("[default" in line for line in merged)  # ranks' lines from their own logs, not the tee
    full = danlu("logs", run, env=danlu_env, check=True).stdout.splitlines()
    assert sorted(full) == sorted(merged)  # follow showed every line, once (interleaved by time)
    tail = danlu("logs", run, "--tail", "4", env=danlu_env, check=True).stdout.splitlines()
    assert tail == full[-4:]

    rank1 = danlu("logs", run, "--rank", "1", env=danlu_env, check=True).stdout
    assert "RuntimeError: injected crash at step 3 on rank 1" in rank1 and "rank=1 world_size=4" in rank1
    assert not has_rank(rank1, 0) and not has_rank(rank1, 2) and "[default" not in rank1
    rank2 = danlu("logs", run, "--rank", "2", env=danlu_env, check=True).stdout
    assert "rank=2 world_size=4" in rank2 and "node=node2" in rank2 and not has_rank(rank2, 3)
    node1 = danlu("logs", run, "--node", "1", env=danlu_env, check=True).stdout
    assert has_rank(node1, 2) and has_rank(node1, 3) and not has_rank(node1, 0) and not has_rank(node1, 1)
    err = danlu("logs", run, "--err", env=danlu_env, check=True).stdout
    assert f"JobEnvironment(job_id={job_id}," in err and "[danlu agent node1 node2]" in err
    assert danlu("logs", run, "--rank", "4", env=danlu_env).returncode == 2
    assert danlu("logs", run, "--node", "2", env=danlu_env).returncode == 2

    show = json.loads(danlu("show", run, "--json", env=danlu_env, check=True).stdout)
    assert show["run"] == run and show["sweep"] == run.split("/")[0] and show["experiment"] == "tiny_dpo"
    assert show["config"]["args"]["crash_at_step"] == 3 and show["config"]["resources"]["nodes"] == 2
    assert "args.crash_at_step=3" in show["overrides"]
    assert Path(show["script_path"]).read_text() == show["script"]
    assert "#SBATCH --nodes=2" in show["script"] and f"DANLU_RUN_ID={run}" in show["script"]
    assert show["command"].startswith("accelerate launch ") and "--crash_at_step=3" in show["command"]
    assert "--machine_rank 0 " in show["launched"]["node0"] and "--machine_rank 1 " in show["launched"]["node1"]
    commit = show["git"]["commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and isinstance(show["git"]["dirty"], bool)
    subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"], check=True)
    (att,) = show["attempts"]
    assert att["attempt"] == 1 and att["job_id"] == job_id and att["state"] == "FAILED"
    assert att["reason"] == item["reason"] and att["nodelist"] == "node[1-2]"
    assert att["started"] and att["ended"] and att["ended"] >= att["started"] and att["final"] is True
    (record,) = att["accounting"]  # sacct's own record of the job, field by field
    assert record["JobID"] == job_id and record["State"] == "FAILED" and record["NodeList"] == "node[1-2]", record
    assert record["ExitCode"] != "0:0" and "Comment" in record, record  # (this cluster keeps no comments)
    text = danlu("show", run, env=danlu_env, check=True).stdout
    assert f"  1  {job_id}  FAILED  " in text and "\ngit " in text and "#SBATCH" not in text, text  # short
    assert f"slurm out  {Path(show['run_dir']).parent}/.slurm/job-{job_id}.out" in text, text
    full = danlu("show", run, "--full", env=danlu_env, check=True).stdout  # the script and sacct's records too
    assert "#SBATCH --nodes=2" in full and f"sacct: JobID={job_id} JobName={run} State=FAILED" in full, full


def has_rank(text: str, rank: int) -> bool:
    """Does the log text have lines a tiny_dpo rank printed about itself (`rank=R world_size=`)?"""
    return re.search(rf"(?<!\w)rank={rank} world_size=", text) is not None


# ---- cancel of running runs: by danlu, and by scancel behind danlu's back -----------------------
def test_cancel_running_runs(danlu_env):
    out = submit_json(
        "-m",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "launch=python",
        "args.sleep_per_step=2",
        "args.max_train_steps=200",
        "args.seed=0,1",
        "--name",
        "long",
        env=danlu_env,
    )
    try:
        wait_status("long", danlu_env, timeout=180, done=lambda items: all(i["state"] == "RUNNING" for i in items))
        done = danlu("cancel", "long/0", env=danlu_env, check=True)
        assert "long/0" in done.stdout and "cancelled 1 run" in done.stderr
        subprocess.run(["scancel", out["runs"][1]["job_id"]], check=True)
        items = wait_status("long", danlu_env, timeout=120)
        by_run = {i["run"]: i for i in items}
        assert by_run["long/0"]["state"] == "CANCELLED" and by_run["long/0"]["reason"].endswith("(danlu cancel)")
        assert by_run["long/1"]["state"] == "CANCELLED" and by_run["long/1"]["reason"] == "cancelled by root", by_run
        # Slurm agrees: both jobs ended as CANCELLED
        for r in out["runs"]:
            deadline = time.time() + 60
            while time.time() < deadline:
                state = subprocess.run(
                    ["sacct", "-X", "-n", "-P", "-o", "State", "-j", r["job_id"]], capture_output=True, text=True
                ).stdout.split("\n")[0]
                if state.startswith("CANCELLED"):
                    break
                time.sleep(1)
            assert state.startswith("CANCELLED"), (r, state)
    finally:
        danlu("cancel", "long", env=danlu_env)


# ---- one sacct and at most one squeue per refresh, with 200 runs -------------------------------
def test_status_of_200_runs_makes_one_sacct_and_at_most_one_squeue(danlu_env, tmp_path):
    out = submit_json(
        "-m",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "args.seed=range(0,200)",
        "resources.extra_sbatch=[--hold]",
        "--name",
        "many",
        env=danlu_env,
    )
    try:
        assert len(out["runs"]) == 200 and len({r["job_id"].split("_")[0] for r in out["runs"]}) == 1
        env, trace = traced(danlu_env, tmp_path, "status200")
        t0 = time.monotonic()
        items = json.loads(danlu("status", "--all", "--json", env=env, check=True).stdout)
        took = time.monotonic() - t0
        assert calls(trace).count("sacct") == 1 and calls(trace).count("squeue") <= 1, calls(trace)
        assert set(calls(trace)) <= {"sacct", "squeue"}
        assert len(items) == 200 and {(i["state"], i["reason"]) for i in items} == {("PENDING", "JobHeldUser")}
        assert [i["job_id"] for i in items] == [r["job_id"] for r in out["runs"]]
        print(f"\nstatus --all with 200 runs: {took:.2f} s, calls {calls(trace)}")
        env, trace = traced(danlu_env, tmp_path, "table200")
        table = danlu("status", "many", env=env, check=True).stdout
        assert table.count("(JobHeldUser)") == 200
        assert calls(trace).count("sacct") == 1 and calls(trace).count("squeue") <= 1, calls(trace)

        env, trace = traced(danlu_env, tmp_path, "cancel200")
        danlu("cancel", "many", env=env, check=True)
        assert calls(trace).count("scancel") == 1
        assert in_squeue([r["job_id"] for r in out["runs"]]) == [] or {
            s
            for s in subprocess.run(
                ["squeue", "-h", "-r", "-t", "all", "-o", "%T", "-j", out["runs"][0]["job_id"].split("_")[0]],
                capture_output=True,
                text=True,
            ).stdout.split()
        } == {"CANCELLED"}
        env, trace = traced(danlu_env, tmp_path, "final200")
        items = status_json("many", env=env)
        assert {i["state"] for i in items} == {"CANCELLED"} and len(items) == 200
        assert calls(trace) == []  # nothing active: Slurm is not asked at all
    finally:
        danlu("cancel", "many", env=danlu_env)


# ---- a job whose submitter died, found again after it left the queue ---------------------------
def wait_left_queue(job_ids: list[str], since: float, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while in_squeue(job_ids) and time.time() < deadline:
        time.sleep(3)
    assert in_squeue(job_ids) == [], f"jobs {job_ids} still in squeue after {time.time() - since:.0f} s"


def test_job_of_a_killed_submit_is_found_in_accounting_after_it_left_the_queue(aged):
    """The crash-recovery lookup by comment fails once the job has left the controller where
    accounting keeps no comments (this cluster, like many): danlu then matches its name and submit
    time in sacct instead of forgetting a job that ran."""
    env = aged["env"]
    wait_left_queue([aged["lost"]], aged["started"])
    db = __import__("sqlite3").connect(env["DANLU_STORE"])
    assert db.execute("SELECT state, job_id FROM attempts WHERE run='aged-lost/0'").fetchone() == ("SUBMITTING", None)
    comment = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "Comment", "-j", aged["lost"]], capture_output=True, text=True, check=True
    ).stdout.strip()
    (item,) = status_json("aged-lost", env=env)
    assert item["job_id"] == aged["lost"], (item, f"sacct comment: {comment!r}")
    assert item["state"] == "CANCELLED" and item["reason"] == "cancelled by root"


# ---- slurmdbd stopped: status answers from squeue + result files, never a false state ----------
def _sacct_answers() -> bool:
    return subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.disruptive  # preempts, kills a node or stops slurmdbd: run alone (tests/run.sh)
def test_status_without_slurmdbd(slurm_cluster, aged, tmp_path):
    env = aged["env"]
    # the finished jobs must have left the controller (MinJobAge); nobody asked danlu about them meanwhile
    wait_left_queue([aged[k]["job_id"] for k in ("ok", "crash", "gone")], aged["started"])
    daemon = slurm_cluster.script("daemon.sh")[1:]  # (bash) [chroot.sh run VERSION bash] daemon.sh
    lock_env = dict(os.environ, DANLU_TESTCLUSTER_HAVE_LOCK="1")
    # hold the cluster lock while slurmdbd is down, so another session's up.sh does not restart it
    with open(slurm_cluster.state_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            subprocess.run(["bash", *daemon, "stop", "slurmdbd"], env=lock_env, check=True, capture_output=True)
            assert not _sacct_answers()
            tenv, trace = traced(env, tmp_path, "nodbd")
            # the killed submit ("aged-lost") may still wait for recovery, whose lookup is one more
            # squeue + sacct; it has been recovered already when earlier tests ran status on this store
            recovering = (
                sqlite3.connect(env["DANLU_STORE"])
                .execute("SELECT count(*) FROM attempts WHERE state='SUBMITTING'")
                .fetchone()[0]
                > 0
            )
            done = danlu("status", "--all", "--json", env=tenv)
            table = danlu("status", "--all", env=env)
            assert not _sacct_answers()  # nobody restarted it meanwhile: the answers above had no sacct
        finally:
            subprocess.run(["bash", *daemon, "start", "slurmdbd"], env=lock_env, check=True, capture_output=True)
            fcntl.flock(lock, fcntl.LOCK_UN)
    deadline = time.time() + 60
    while not _sacct_answers() and time.time() < deadline:
        time.sleep(1)
    assert _sacct_answers(), "sacct does not answer after slurmdbd was restarted"

    assert done.returncode == 0, done.stderr
    assert "sacct is unavailable" in done.stderr and "Connection refused" in done.stderr
    # the recovery's lookup asks sacct only for a job squeue no longer shows (it may still be queued)
    assert 1 <= calls(trace).count("sacct") <= 1 + recovering and calls(trace).count("squeue") == 1 + recovering, calls(
        trace
    )
    by_run = {i["sweep"]: i for i in json.loads(done.stdout)}
    assert by_run["aged-held"]["state"] == "PENDING" and by_run["aged-held"]["reason"] == "JobHeldUser"  # squeue
    assert by_run["aged-ok"]["state"] == "COMPLETED"  # the run's own result file
    assert by_run["aged-crash"]["state"] == "FAILED"
    assert by_run["aged-crash"]["reason"] == "RuntimeError: injected crash at step 1 on rank 0"  # from its logs
    # cancelled behind danlu's back before it started: no result file, gone from squeue -> not a guess
    assert by_run["aged-gone"]["state"] == "UNKNOWN" and "sacct is unavailable" in by_run["aged-gone"]["reason"]
    assert table.returncode == 0
    gone_line = next(line for line in table.stdout.splitlines() if line.startswith("aged-gone/0"))
    assert " ? " in gone_line and "(sacct is unavailable" in gone_line
    ok_line = next(line for line in table.stdout.splitlines() if line.startswith("aged-ok/0"))
    assert ok_line.split()[4:6] == ["CD", "-"]  # how long it ran is not known without sacct: not 0:00

    # accounting back: what was UNKNOWN becomes what it really was
    by_run = {i["sweep"]: i for i in status_json(env=env)}
    assert by_run["aged-gone"]["state"] == "CANCELLED" and by_run["aged-gone"]["reason"] == "cancelled by root"
    assert by_run["aged-held"]["state"] == "PENDING"
    assert by_run["aged-ok"]["state"] == "COMPLETED" and by_run["aged-crash"]["state"] == "FAILED"
