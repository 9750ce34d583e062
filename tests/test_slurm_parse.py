"""Parsing of Slurm's output and failure classification, on text captured from the real test
cluster (tests/captured/, re-made by tests/captured/status_capture.sh) and on log text. No Slurm needed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from launcher import slurm
from launcher.layout import RunLayout
from launcher.state.reasons import classify, tail_lines
from launcher.state.reconcile import SlurmAnswers, new_state
from launcher.views.table import fmt_elapsed


def _new_state(row, acct, queue, acct_ok, queue_ok=True):
    return new_state(row, SlurmAnswers(acct, queue, acct_ok, queue_ok))

CAPTURED = Path(__file__).resolve().parent / "captured"


def captured(name: str) -> str:
    return (CAPTURED / name).read_text()


def jobs() -> dict:
    return dict(line.split("=") for line in captured("status_jobs.txt").split())


# ---- sacct ---------------------------------------------------------------------------------------
def test_sacct_states_reasons_and_exit_codes():
    j = jobs()
    acct = slurm.parse_sacct(captured("sacct_states.txt"))
    assert acct[j["held"]].state == "PENDING" and acct[j["held"]].reason == "JobHeldUser"
    assert acct[j["begin"]].reason == "BeginTime"
    assert acct[j["dep"]].reason == "Dependency"
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


def test_sacct_pending_array_is_expanded_with_its_throttle():
    j = jobs()
    acct = slurm.parse_sacct(captured("sacct_states.txt"))
    assert "_[0-4%2]" in captured("sacct_states.txt")  # what sacct really prints for a pending array
    tasks = sorted(k for k in acct if k.startswith(j["array"] + "_"))
    assert tasks == [f"{j['array']}_{i}" for i in range(5)]
    assert all(acct[t].state == "PENDING" and acct[t].reason == "JobHeldUser" for t in tasks)


def test_sacct_cancelled_pending_keeps_its_last_reason():
    acct = slurm.parse_sacct(captured("sacct_after_cancel.txt"))
    held = acct[jobs()["held"]]
    assert held.state == "CANCELLED by 0" and held.reason == "JobHeldUser" and held.started is None


def test_sacct_requeued_job_last_record_wins_and_counts_restarts():
    text = captured("sacct_preempted_requeued.txt")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    first_id = lines[0].split("|")[0]
    assert [ln.split("|")[2] for ln in lines if ln.startswith(first_id + "|")] == ["PREEMPTED", "COMPLETED"]
    info = slurm.parse_sacct(text)[first_id]
    assert info.state == "COMPLETED" and info.restarts == 1


def test_sacct_garbage_lines_are_skipped():
    assert slurm.parse_sacct("sacct: error: something\n\n") == {}


# ---- squeue --------------------------------------------------------------------------------------
def test_squeue_all_states_and_array_tasks():
    j = jobs()
    q = slurm.parse_squeue(captured("squeue_states.txt"))
    assert q[j["held"]].state == "PENDING" and q[j["held"]].reason == "JobHeldUser"
    assert q[j["begin"]].reason == "BeginTime"
    assert q[f"{j['array']}_3"].reason == "JobHeldUser"
    assert q[j["run"]].state == "RUNNING" and q[j["run"]].nodelist == "node[1-2]" and q[j["run"]].elapsed == 4
    assert q[j["run"]].comment == "danlu:capture:run"
    # -t all: jobs that ended within MinJobAge are still listed, with the controller's final state
    assert q[j["ok"]].state == "COMPLETED"
    assert q[j["fail"]].state == "FAILED" and q[j["fail"]].reason == "NonZeroExitCode"
    assert q[j["cancel"]].state == "COMPLETING"


def test_squeue_unexpanded_array():
    j = jobs()
    q = slurm.parse_squeue(captured("squeue_array_unexpanded.txt"))
    assert sorted(k for k in q if k.startswith(j["array"] + "_")) == [f"{j['array']}_{i}" for i in range(5)]


@pytest.mark.parametrize("text,seconds", [("0:00", 0), ("0:04", 4), ("1:02:03", 3723), ("2-01:00:00", 176400),
                                          ("INVALID", None), ("", None)])
def test_squeue_elapsed(text, seconds):
    assert slurm.parse_elapsed(text) == seconds


def test_query_ids_ask_for_arrays_once():
    assert slurm.query_ids(["51_0", "51_1", "51_199", "7", "local-123", ""]) == ["7", "51"]


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
    return {"job_id": job_id, "run_dir": str(run_dir), "attempt": 1, "state": state, "submitted": time.time()}


def test_refresh_decisions_on_captured_text(tmp_path):
    j = jobs()
    acct = slurm.parse_sacct(captured("sacct_early.txt"))
    queue = slurm.parse_squeue(captured("squeue_states.txt"))
    held = _new_state(_row(j["held"], tmp_path), acct, queue, True)
    assert held["state"] == "PENDING" and held["reason"] == "JobHeldUser"
    running = _new_state(_row(j["run"], tmp_path), acct, queue, True)
    assert running["state"] == "RUNNING" and running["nodelist"] == "node[1-2]"
    failed = _new_state(_row(j["fail"], tmp_path, "RUNNING"), acct, queue, True)
    assert failed["state"] == "FAILED" and failed["exit_code"] == "3:0" and failed["reason"] == "non-zero exit (3)"
    # sacct already says CANCELLED, the controller still COMPLETING: not final yet
    assert _new_state(_row(j["cancel"], tmp_path, "RUNNING"), acct, queue, True)["state"] == "COMPLETING"


def test_without_sacct_squeue_and_result_files_only_never_a_guess(tmp_path):
    j = jobs()
    queue = slurm.parse_squeue(captured("squeue_states.txt"))
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
    requeued = _new_state(_row(gone + "2", tmp_path, "RUNNING", {"exit_code": 0, "interrupted": True}), {}, queue, False)
    assert requeued["state"] == "UNKNOWN"
    # neither sacct nor squeue answered: nothing is known
    assert _new_state(_row(gone + "3", tmp_path, "RUNNING", {"exit_code": 0}), {}, {}, False, False)["state"] == "UNKNOWN"
    # with sacct working, a job it does not know yet keeps its last state (accounting lags)
    assert _new_state(_row(gone + "4", tmp_path, "PENDING"), {}, {}, True) is None


def test_requeued_job_follows_the_controller_not_an_old_sacct_record(tmp_path):
    """sacct's record says PREEMPTED while the controller already has the job pending again."""
    first = captured("sacct_preempted_requeued.txt").splitlines()[0]
    jid = first.split("|")[0]
    acct = slurm.parse_sacct(first)
    queue = slurm.parse_squeue(f"{jid}|PENDING|BeginTime||debug-4090-01|0:00|1|danlu:x:0|{jid}\n")
    upd = _new_state(_row(jid, tmp_path, "RUNNING"), acct, queue, True)
    assert upd["state"] == "PENDING" and upd["reason"] == "BeginTime"
    assert _new_state(_row(jid + "9", tmp_path, "RUNNING"), slurm.parse_sacct(first.replace(jid, jid + "9", 1)), {},
                      True)["state"] == "PREEMPTED"


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


@pytest.mark.parametrize("state,exit_code,log,expected", [
    # CUDA out of memory (torch >= 2.1 and older spellings)
    ("FAILED", "1:0", TRACEBACK.format(last="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB "
                                            "(GPU 0; 23.65 GiB total capacity; 21.90 GiB already allocated)"),
     "CUDA out of memory"),
    ("FAILED", "1:0", "[default0]:[rank0]: RuntimeError: CUDA error: out of memory", "CUDA out of memory"),
    # host out of memory: Slurm's cgroup OOM killer, or the state itself
    ("OUT_OF_MEMORY", "0:125", "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=52.0. Some of your processes "
                               "may have been killed by the cgroup out-of-memory handler.", "host out of memory"),
    ("OUT_OF_MEMORY", "0:125", "", "host out of memory"),
    ("FAILED", "1:0", TRACEBACK.format(last="MemoryError"), "host out of memory"),
    # NCCL / gloo errors with no other cause
    ("FAILED", "1:0", "[rank1]: torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/"
                      "ProcessGroupNCCL.cpp:1970, unhandled system error (run with NCCL_DEBUG=INFO for details), "
                      "NCCL version 2.19.3\nncclSystemError: System call (e.g. socket, malloc) or external library "
                      "call failed or device error.",
     "communication error (NCCL/gloo): torch.distributed.DistBackendError: NCCL error in: *"),
    ("FAILED", "1:0", "[E ProcessGroupNCCL.cpp:475] [Rank 3] Watchdog caught collective operation timeout: "
                      "WorkNCCL(SeqNum=12, OpType=ALLREDUCE, Timeout(ms)=600000) ran for 600523 milliseconds",
     "communication error (NCCL/gloo): [E ProcessGroupNCCL.cpp:475] [Rank 3] Watchdog caught collective operation *"),
    # a Python exception: its last line, chained tracebacks give the first cause in the logs
    ("FAILED", "1:0", TRACEBACK.format(last="ValueError: bad learning rate -1"), "ValueError: bad learning rate -1"),
    ("FAILED", "1:0", TRACEBACK.format(last="KeyError: 'image'") + "\n\nDuring handling of the above exception, another "
     "exception occurred:\n\n" + TRACEBACK.format(last="subprocess.CalledProcessError: Command '['python', 'train.py']' "
                                                      "returned non-zero exit status 1."), "KeyError: 'image'"),
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
    ("FAILED", "127:0", "[danlu agent node0 node1] cannot start 'accelerate': [Errno 2] No such file or directory",
     "command not found: accelerate (is its environment activated? see env=)"),
    # srun could not start the step on a node (captured when another test took node2's slurmd down)
    ("FAILED", "105:0", "srun: Job 188 step creation temporarily disabled, retrying (Requested nodes are busy)\n"
                        "srun: error: Task launch for StepId=188.0 failed on node node2: Communication connection failure\n"
                        "srun: error: Application launch failed: Communication connection failure\n"
                        "slurmstepd-node1: error: *** STEP 188.0 ON node1 CANCELLED AT 2026-11-22T08:29:53 ***",
     "task launch failed on node2: Communication connection failure"),
    ("COMPLETED", "0:0", "RuntimeError: a handled one", None),
])
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
    assert classify("FAILED", "1:0", "node1", lines) == "stopped at the time limit after 3 requeues (requeue.max_requeues=3)"


def test_reason_when_the_agent_ended_a_hung_job():
    """The agent's line wins over the peers' communication errors that its kill causes."""
    lines = ["step=3 loss=0.2", "[danlu agent] hung: no output from the training processes on node2 for 15s "
             "(launch.hang_timeout_s=15); ending the job", "RuntimeError: [../gloo/transport/tcp/pair.cc:534] "
             "Connection closed by peer [127.0.0.1]:40000"]
    assert classify("FAILED", "137:0", "node[1-2]", lines) == \
        "hung: no output from the training processes on node2 for 15s (launch.hang_timeout_s=15)"


def test_reason_when_ranks_trained_alone():
    lines = ["done steps=6", "[danlu agent] 2 of 2 training process(es) on this node trained alone, not in one world "
             "of 2 (no process group: pids 11 12); the run is not complete"]
    assert classify("FAILED", "3:0", "node1", lines).startswith("the ranks trained as independent copies, not one world of 2")
