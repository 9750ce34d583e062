"""Parsing of Slurm's output and failure classification, on text captured from the real test clusters of
every Slurm version tested (tests/captured/<version>/, made by tests/captured/status_capture.sh against
tests/cluster/up.sh VERSION) and on log text. No Slurm needed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from launcher import slurm
from launcher.backends import SlurmAnswers
from launcher.cluster_facts import parse_config as slurm_config
from launcher.layout import RunLayout
from launcher.state.machine import step
from launcher.state.reasons import classify, tail_lines
from launcher.views.table import fmt_elapsed


def _new_state(row, acct, queue, acct_ok, queue_ok=True):
    return step(row, SlurmAnswers(acct, queue, acct_ok, queue_ok))


CAPTURED = Path(__file__).resolve().parent / "captured"
VERSIONS = ["22.05", "24.11", "26.05"]  # the Slurm versions of the test clusters (tests/cluster/up.sh VERSION)
every_version = pytest.mark.parametrize("version", VERSIONS)


def captured(name: str, version: str = "22.05") -> str:
    return (CAPTURED / version / name).read_text()


def jobs(version: str = "22.05") -> dict:
    return dict(line.split("=") for line in captured("status_jobs.txt", version).split())


def newer(version: str) -> bool:
    """Slurm 23 and later (../shared/SLURM-VERSIONS.md): sacct's pending reason is None, a requeued job gets its
    PENDING record at once."""
    return int(version.split(".")[0]) >= 23


def test_every_version_has_its_captures():
    for version in VERSIONS:
        for name in (
            "status_jobs.txt",
            "sacct_states.txt",
            "sacct_early.txt",
            "sacct_after_cancel.txt",
            "sacct_preempted_requeued.txt",
            "squeue_preempted_requeued.txt",
            "squeue_states.txt",
            "squeue_array_unexpanded.txt",
            "cluster_sinfo_busy.txt",
            "cluster_squeue_busy.txt",
            "facts_config.txt",
            "facts_partitions.txt",
            "facts_sinfo.txt",
            "facts_assoc.txt",
        ):
            assert (CAPTURED / version / name).stat().st_size > 0, (version, name)
        config = slurm_config(captured("facts_config.txt", version))
        assert config["SLURM_VERSION"].startswith(version + "."), (version, config["SLURM_VERSION"])


# ---- sacct ---------------------------------------------------------------------------------------
@every_version
def test_sacct_states_reasons_and_exit_codes(version):
    j = jobs(version)
    acct = slurm.parse_sacct(captured("sacct_states.txt", version))
    if newer(version):  # sacct says None for every pending reason (squeue has it: the refresh takes it there)
        assert {acct[j[k]].reason for k in ("held", "begin", "dep")} == {""}
    else:
        assert acct[j["held"]].state == "PENDING" and acct[j["held"]].reason == "JobHeldUser"
        assert acct[j["begin"]].reason == "BeginTime"
        assert acct[j["dep"]].reason == "Dependency"
    assert acct[j["held"]].state == "PENDING"
    assert acct[j["held"]].nodelist == ""  # "None assigned"
    assert acct[j["held"]].started is None and acct[j["held"]].end is None  # "Unknown"
    assert acct[j["run"]].state == "RUNNING" and acct[j["run"]].nodelist == "node[1-2]"
    assert acct[j["ok"]].state == "COMPLETED" and acct[j["ok"]].exit_code == "0:0"
    assert acct[j["fail"]].state == "FAILED" and acct[j["fail"]].exit_code == "3:0"
    assert acct[j["cancel"]].state == "CANCELLED by 0"
    assert slurm.base_state(acct[j["cancel"]].state) == "CANCELLED"
    assert acct[j["tlimit"]].state == "TIMEOUT" and acct[j["tlimit"]].elapsed >= 60
    t = acct[j["tlimit"]]
    assert t.ended - t.started == pytest.approx(t.elapsed, abs=1)


@every_version
def test_sacct_pending_array_is_expanded_with_its_throttle(version):
    j = jobs(version)
    acct = slurm.parse_sacct(captured("sacct_states.txt", version))
    assert "_[0-4%2]" in captured("sacct_states.txt", version)  # what sacct really prints for a pending array
    tasks = sorted(k for k in acct if k.startswith(j["array"] + "_"))
    assert tasks == [f"{j['array']}_{i}" for i in range(5)]
    assert all(
        acct[t].state == "PENDING" and acct[t].reason == ("" if newer(version) else "JobHeldUser") for t in tasks
    )


@every_version
def test_sacct_cancelled_pending_job(version):
    acct = slurm.parse_sacct(captured("sacct_after_cancel.txt", version))
    held = acct[jobs(version)["held"]]
    assert held.state == "CANCELLED by 0" and held.started is None  # Start: Unknown (22.05) or None (24.11 on)
    # 22.05 keeps the last pending reason after a cancel; newer ones do not
    assert held.reason == ("" if newer(version) else "JobHeldUser")


@every_version
def test_sacct_right_after_a_preemption_with_requeue(version):
    """Captured two seconds after a higher-tier job preempted the victim: every version lists a PENDING record
    of the next start next to the PREEMPTED one (22.05 too, here: ../shared/SLURM-VERSIONS.md says it lists
    PREEMPTED only), which "last record wins" reads as one restart; only 22.05's carries the pending reason."""
    j = jobs(version)
    text = captured("sacct_preempted_requeued.txt", version)
    states = [ln.split("|")[2] for ln in text.splitlines() if ln.startswith(j["victim"] + "|")]
    assert states == ["PREEMPTED", "PENDING"]
    info = slurm.parse_sacct(text)[j["victim"]]
    assert (slurm.base_state(info.state), info.restarts) == ("PENDING", 1)
    assert info.reason == ("" if newer(version) else "BeginTime")
    assert info.raw.count("\n") == len(states) - 1  # every record kept for `danlu show`


@every_version
def test_a_preempted_run_is_pending_and_not_final_through_the_requeue_window(version, tmp_path):
    """The refresh's decision on that moment's sacct and squeue, on every version: PENDING (BeginTime, the
    requeue's wait), not final, one restart; with squeue failing too, never final."""
    j = jobs(version)
    acct = slurm.parse_sacct(captured("sacct_preempted_requeued.txt", version))
    queue = slurm.parse_squeue(captured("squeue_preempted_requeued.txt", version))
    seen = _new_state(_row(j["victim"], tmp_path / "q", "RUNNING"), acct, queue, True)
    assert seen["state"] == "PENDING" and seen["reason"] == "BeginTime" and seen["final"] is False
    blind = _new_state(_row(j["victim"], tmp_path / "b", "RUNNING"), acct, {}, True, queue_ok=False)
    assert blind["final"] is False and blind["state"] in ("PENDING", "PREEMPTED")


def test_sacct_garbage_lines_are_skipped():
    assert slurm.parse_sacct("sacct: error: something\n\n") == {}


# ---- squeue --------------------------------------------------------------------------------------
@every_version
def test_squeue_all_states_and_array_tasks(version):
    j = jobs(version)
    q = slurm.parse_squeue(captured("squeue_states.txt", version))
    assert q[j["held"]].state == "PENDING" and q[j["held"]].reason == "JobHeldUser"
    assert q[j["begin"]].reason == "BeginTime"
    assert q[f"{j['array']}_3"].reason == "JobHeldUser"
    assert q[j["run"]].state == "RUNNING" and q[j["run"]].nodelist == "node[1-2]" and 3 <= q[j["run"]].elapsed <= 8
    assert q[j["run"]].comment == "danlu:capture:run"
    # -t all: jobs that ended within MinJobAge are still listed, with the controller's final state
    assert q[j["ok"]].state == "COMPLETED"
    assert q[j["fail"]].state == "FAILED" and q[j["fail"]].reason == "NonZeroExitCode"
    assert q[j["cancel"]].state in ("COMPLETING", "CANCELLED")  # 5 s after the scancel: either, by version and luck


@every_version
def test_squeue_unexpanded_array(version):
    j = jobs(version)
    q = slurm.parse_squeue(captured("squeue_array_unexpanded.txt", version))
    assert sorted(k for k in q if k.startswith(j["array"] + "_")) == [f"{j['array']}_{i}" for i in range(5)]


@pytest.mark.parametrize(
    "text,seconds", [("0:00", 0), ("0:04", 4), ("1:02:03", 3723), ("2-01:00:00", 176400), ("INVALID", None), ("", None)]
)
def test_squeue_elapsed(text, seconds):
    assert slurm.parse_elapsed(text) == seconds


def test_query_ids_ask_for_arrays_once():
    assert slurm.query_ids(["51_0", "51_1", "51_199", "7", ""]) == ["7", "51"]


def test_fmt_elapsed():
    assert fmt_elapsed(None) == "0:00" and fmt_elapsed(59) == "0:59" and fmt_elapsed(3723) == "1:02:03"
    assert fmt_elapsed(90061) == "1-01:01:01"


# ---- one refresh's decision, on captured answers -------------------------------------------------
def _row(job_id: str, tmp_path: Path, state: str = "PENDING", result: dict | None = None) -> dict:
    run_dir = tmp_path / job_id
    attempt = RunLayout(run_dir).attempt(1)
    attempt.root.mkdir(parents=True)
    if result is not None:
        attempt.write_result(result)
    kind = "local" if job_id.startswith("local-") else "slurm"  # as the store records it for such a run
    return {
        "job_id": job_id,
        "run_dir": str(run_dir),
        "attempt": 1,
        "state": state,
        "submitted": time.time(),
        "cluster_kind": kind,
    }


@every_version
def test_refresh_decisions_on_captured_text(version, tmp_path):
    """On every version the pending reason shown is Slurm's (sacct's on 22.05, squeue's where sacct says None)."""
    j = jobs(version)
    acct = slurm.parse_sacct(captured("sacct_early.txt", version))
    queue = slurm.parse_squeue(captured("squeue_states.txt", version))
    held = _new_state(_row(j["held"], tmp_path), acct, queue, True)
    assert held["state"] == "PENDING" and held["reason"] == "JobHeldUser"
    running = _new_state(_row(j["run"], tmp_path), acct, queue, True)
    assert running["state"] == "RUNNING" and running["nodelist"] == "node[1-2]"
    failed = _new_state(_row(j["fail"], tmp_path, "RUNNING"), acct, queue, True)
    assert failed["state"] == "FAILED" and failed["exit_code"] == "3:0" and failed["reason"] == "non-zero exit (3)"
    # sacct already says CANCELLED; while the controller still says COMPLETING, that is what is shown, not final
    cancelled = _new_state(_row(j["cancel"], tmp_path, "RUNNING"), acct, queue, True)
    if queue[j["cancel"]].state == "COMPLETING":
        assert cancelled["state"] == "COMPLETING" and cancelled["final"] is False
    else:
        assert cancelled["state"] == "CANCELLED" and cancelled["final"] is True


@every_version
def test_without_sacct_squeue_and_result_files_only_never_a_guess(version, tmp_path):
    j = jobs(version)
    queue = slurm.parse_squeue(captured("squeue_states.txt", version))
    assert _new_state(_row(j["held"], tmp_path), {}, queue, False)["state"] == "PENDING"
    # ended a moment ago: the controller's final state is a fact
    assert _new_state(_row(j["fail"], tmp_path, "RUNNING"), {}, queue, False)["state"] == "FAILED"
    # gone from the controller: the job's own result file, else UNKNOWN
    gone = "999999"
    done = _new_state(_row(gone, tmp_path, "RUNNING", {"exit_code": 0, "interrupted": False}), {}, queue, False)
    assert done["state"] == "COMPLETED"
    unknown = _new_state(_row(gone + "1", tmp_path, "RUNNING"), {}, queue, False)
    assert unknown["state"] == "UNKNOWN" and "sacct is unavailable" in unknown["reason"]
    # an interrupted (requeued) run's result says nothing about how the job ended
    requeued = _new_state(
        _row(gone + "2", tmp_path, "RUNNING", {"exit_code": 0, "interrupted": True}), {}, queue, False
    )
    assert requeued["state"] == "UNKNOWN"
    # neither sacct nor squeue answered: nothing is known
    assert (
        _new_state(_row(gone + "3", tmp_path, "RUNNING", {"exit_code": 0}), {}, {}, False, False)["state"] == "UNKNOWN"
    )
    # with sacct working, a job it does not know yet keeps its last state (accounting lags)
    assert _new_state(_row(gone + "4", tmp_path, "PENDING"), {}, {}, True) is None


@every_version
def test_requeued_job_follows_the_controller_not_an_old_sacct_record(version, tmp_path):
    """sacct's record says PREEMPTED while the controller already has the job pending again."""
    first = captured("sacct_preempted_requeued.txt", version).splitlines()[0]
    jid = first.split("|")[0]
    acct = slurm.parse_sacct(first)
    queue = slurm.parse_squeue(f"{jid}|PENDING|BeginTime||debug-4090-01|0:00|1|danlu:x:0|{jid}\n")
    upd = _new_state(_row(jid, tmp_path, "RUNNING"), acct, queue, True)
    assert upd["state"] == "PENDING" and upd["reason"] == "BeginTime"
    assert upd["final"] is False
    # squeue answered and no longer lists the job: Slurm will not start it again, the PREEMPTED record is final
    gone = _new_state(
        _row(jid + "9", tmp_path, "RUNNING"), slurm.parse_sacct(first.replace(jid, jid + "9", 1)), {}, True
    )
    assert gone["state"] == "PREEMPTED" and gone["final"] is True


@every_version
def test_a_requeueable_end_is_final_only_once_squeue_answered_without_the_job(version, tmp_path):
    """PREEMPTED, NODE_FAIL and TIMEOUT may be followed by a requeue (danlu submits with --requeue): while squeue
    lists the job, or when squeue failed, such a state is shown but not final; other ends are final at once."""
    first = captured("sacct_preempted_requeued.txt", version).splitlines()[0]
    jid = first.split("|")[0]
    acct = slurm.parse_sacct(first)
    assert slurm.base_state(acct[jid].state) == "PREEMPTED" and acct[jid].raw == first
    failed_squeue = _new_state(_row(jid, tmp_path, "RUNNING"), acct, {}, True, queue_ok=False)
    assert failed_squeue["state"] == "PREEMPTED" and failed_squeue["final"] is False
    assert failed_squeue["accounting"] == first  # the raw record, for `danlu show`
    listed = slurm.parse_squeue(f"{jid}|PREEMPTED|None|node1|debug-4090-01|0:40|1|danlu:x:0|{jid}\n")
    still = _new_state(
        _row(jid + "1", tmp_path, "RUNNING"),
        slurm.parse_sacct(first.replace(jid, jid + "1", 1)),
        {jid + "1": listed[jid]},
        True,
    )
    assert still["state"] == "PREEMPTED" and still["final"] is False
    for end in ("NODE_FAIL", "TIMEOUT"):
        line = first.replace("PREEMPTED", end)
        assert (
            _new_state(_row(jid, tmp_path / end, "RUNNING"), slurm.parse_sacct(line), {}, True, queue_ok=False)["final"]
            is False
        )
    # a COMPLETED or FAILED record is final even when squeue failed: Slurm never requeues those by itself
    done = first.replace("PREEMPTED", "COMPLETED")
    assert (
        _new_state(_row(jid, tmp_path / "done", "RUNNING"), slurm.parse_sacct(done), {}, True, queue_ok=False)["final"]
        is True
    )
    # sacct lists every start of a requeued job (-D): `danlu show` keeps all of them
    two = slurm.parse_sacct(first.replace("PREEMPTED", "REQUEUED") + "\n" + done)
    assert two[jid].raw.count("\n") == 1 and two[jid].restarts == 1


# ---- failure classification ----------------------------------------------------------------------
def crash_logs(name: str) -> list[str]:
    d = CAPTURED / "logs" / name
    return tail_lines(sorted(d.glob("*.log")))


def test_real_two_node_crash_names_the_crash_not_the_peers_gloo_error():
    # rank 1 raised; ranks 0, 2, 3 died with gloo "Connection closed by peer"; torch elastic added
    # ChildFailedError and SIGTERM noise (captured from a 2-node tiny_dpo run on the test cluster)
    lines = crash_logs("crash_2node")
    assert any("Connection closed by peer" in ln for ln in lines) and any("ChildFailedError" in ln for ln in lines)
    assert classify("FAILED", "1:0", "node[1-2]", lines) == "RuntimeError: injected crash at step 3 on rank 1"


def test_real_crash_on_the_second_node():
    lines = crash_logs("crash_2node_rank2")
    assert classify("FAILED", "1:0", "node[1-2]", lines) == "RuntimeError: injected crash at step 3 on rank 2"


TRACEBACK = """Traceback (most recent call last):
  File "train.py", line 10, in <module>
    main()
  File "train.py", line 8, in main
    x = load()
{last}"""


@pytest.mark.parametrize(
    "state,exit_code,log,expected",
    [
        # CUDA out of memory (torch >= 2.1 and older spellings)
        (
            "FAILED",
            "1:0",
            TRACEBACK.format(
                last="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB "
                "(GPU 0; 23.65 GiB total capacity; 21.90 GiB already allocated)"
            ),
            "CUDA out of memory",
        ),
        ("FAILED", "1:0", "[default0]:[rank0]: RuntimeError: CUDA error: out of memory", "CUDA out of memory"),
        # host out of memory: Slurm's cgroup OOM killer, or the state itself
        (
            "OUT_OF_MEMORY",
            "0:125",
            "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=52.0. Some of your processes "
            "may have been killed by the cgroup out-of-memory handler.",
            "host out of memory",
        ),
        ("OUT_OF_MEMORY", "0:125", "", "host out of memory"),
        ("FAILED", "1:0", TRACEBACK.format(last="MemoryError"), "host out of memory"),
        # NCCL / gloo errors with no other cause
        (
            "FAILED",
            "1:0",
            "[rank1]: torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/"
            "ProcessGroupNCCL.cpp:1970, unhandled system error (run with NCCL_DEBUG=INFO for details), "
            "NCCL version 2.19.3\nncclSystemError: System call (e.g. socket, malloc) or external library "
            "call failed or device error.",
            "communication error (NCCL/gloo): torch.distributed.DistBackendError: NCCL error in: *",
        ),
        (
            "FAILED",
            "1:0",
            "[E ProcessGroupNCCL.cpp:475] [Rank 3] Watchdog caught collective operation timeout: "
            "WorkNCCL(SeqNum=12, OpType=ALLREDUCE, Timeout(ms)=600000) ran for 600523 milliseconds",
            "communication error (NCCL/gloo): "
            "[E ProcessGroupNCCL.cpp:475] [Rank 3] Watchdog caught collective operation *",
        ),
        # a Python exception: its last line, chained tracebacks give the first cause in the logs
        (
            "FAILED",
            "1:0",
            TRACEBACK.format(last="ValueError: bad learning rate -1"),
            "ValueError: bad learning rate -1",
        ),
        (
            "FAILED",
            "1:0",
            TRACEBACK.format(last="KeyError: 'image'") + "\n\nDuring handling of the above exception, another "
            "exception occurred:\n\n"
            + TRACEBACK.format(
                last="subprocess.CalledProcessError: Command '['python', 'train.py']' returned non-zero exit status 1."
            ),
            "KeyError: 'image'",
        ),
        # a mention of the backend is not a communication error
        ("FAILED", "2:0", "using gloo backend\nstep=1 loss=0.3", "non-zero exit (2)"),
        # Slurm's own verdicts
        ("TIMEOUT", "0:0", "step=9 loss=0.1", "time limit reached"),
        ("PREEMPTED", "0:0", "", "preempted"),
        ("NODE_FAIL", "0:0", "", "node failure (node[1-2])"),
        ("CANCELLED by 0", "0:15", "RuntimeError: whatever the ranks said when killed", "cancelled by root"),
        ("CANCELLED", "0:0", "", "cancelled"),
        # no log to go by
        ("FAILED", "3:0", "", "non-zero exit (3)"),
        ("FAILED", "0:9", "", "killed by signal 9"),
        # the agent could not start the launcher
        (
            "FAILED",
            "127:0",
            "[danlu agent node0 node1] cannot start 'accelerate': [Errno 2] No such file or directory",
            "command not found: accelerate (is its environment activated? see env=)",
        ),
        # srun could not start the step on a node (captured when another test took node2's slurmd down)
        (
            "FAILED",
            "105:0",
            "srun: Job 188 step creation temporarily disabled, retrying (Requested nodes are busy)\n"
            "srun: error: Task launch for StepId=188.0 failed on node node2: Communication connection failure\n"
            "srun: error: Application launch failed: Communication connection failure\n"
            "slurmstepd-node1: error: *** STEP 188.0 ON node1 CANCELLED AT 2026-11-22T08:29:53 ***",
            "task launch failed on node2: Communication connection failure",
        ),
        ("COMPLETED", "0:0", "RuntimeError: a handled one", None),
    ],
)
def test_classify(state, exit_code, log, expected):
    """`expected` ending in '*' is a prefix (the reason is cut at 160 characters)."""
    got = classify(state, exit_code, "node[1-2]", log.splitlines())
    if expected is not None and expected.endswith("*"):
        assert got.startswith(expected[:-1]) and len(got) <= 160, got
    else:
        assert got == expected


def test_classify_cancelled_by_an_unknown_uid_keeps_the_number():
    assert classify("CANCELLED by 4242424", "0:0", "", []) == "cancelled by 4242424"


def test_tail_lines_reads_only_the_end_of_big_logs(tmp_path):
    big = tmp_path / "node0.log"
    big.write_text("x" * 200_000 + "\nValueError: the end\n")
    lines = tail_lines([big, tmp_path / "missing.log"], max_bytes=1000)
    assert lines[-1] == "ValueError: the end" and sum(len(ln) for ln in lines) < 1100


def test_reason_when_requeues_ran_out():
    lines = ["step=7 loss=0.1", "[danlu agent] not requeued: 3 requeues already (requeue.max_requeues=3)"]
    assert (
        classify("FAILED", "1:0", "node1", lines)
        == "stopped at the time limit after 3 requeues (requeue.max_requeues=3)"
    )


def test_reason_when_the_only_requeue_was_used():
    """The agent says "1 requeue already": the reason is the same as for more, in the singular."""
    lines = ["step=7 loss=0.1", "[danlu agent] not requeued: 1 requeue already (requeue.max_requeues=1)"]
    assert (
        classify("FAILED", "1:0", "node1", lines)
        == "stopped at the time limit after 1 requeue (requeue.max_requeues=1)"
    )


def test_reason_when_the_agent_ended_a_hung_job():
    """The agent's line wins over the peers' communication errors that its kill causes."""
    lines = [
        "step=3 loss=0.2",
        "[danlu agent] hung: no output from the training processes on node2 for 15s "
        "(launch.hang_timeout_s=15); ending the job",
        "RuntimeError: [../gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:40000",
    ]
    assert (
        classify("FAILED", "137:0", "node[1-2]", lines)
        == "hung: no output from the training processes on node2 for 15s (launch.hang_timeout_s=15)"
    )


def test_reason_when_ranks_trained_alone():
    lines = [
        "done steps=6",
        "[danlu agent] 2 of 2 training processes on this node trained alone, not in one world "
        "of 2 (no process group: pids 11 12); the run is not complete",
    ]
    assert classify("FAILED", "3:0", "node1", lines).startswith(
        "the ranks trained as independent copies, not one world of 2"
    )


@pytest.mark.parametrize(
    "text,hosts",
    [
        ("node[1-2]", ["node1", "node2"]),
        ("node2", ["node2"]),
        ("", []),
        ("gpu-a[08-10],cpu7", ["gpu-a08", "gpu-a09", "gpu-a10", "cpu7"]),
        ("n[1,3-4]x", ["n1x", "n3x", "n4x"]),
    ],
)
def test_hostlist_expands_like_scontrol_show_hostnames(text, hosts):
    assert slurm.expand_hostlist(text) == hosts


@pytest.mark.parametrize(
    "message,refused",
    [
        ("sbatch: error: Batch job submission failed: Invalid partition name specified", True),
        ("sbatch: error: Invalid --begin specification", True),
        ("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)", True),
        ("sbatch not found", True),
        # the controller may have queued the job: its answer was lost
        ("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation", False),
        ("sbatch: Command '['sbatch', '--parsable', 'x']' timed out after 120 seconds", False),
        ("sbatch: error: Batch job submission failed: Zero Bytes were transmitted or received", False),
        ("sbatch: unexpected answer 'Submitted batch job'", False),
        ("sbatch: ", False),
    ],
)
def test_which_sbatch_failures_mean_no_job_was_queued(message, refused):
    assert slurm.sbatch_refused(message) is refused
