"""The node agent's parts without Slurm: the stop policy and the requeue decision as tables of cases, Slurm's
answers as the agent reads them, the protocol files between nodes, and the process tree on real processes."""

from __future__ import annotations

import dataclasses
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
from danlu_helpers import REPO

from launcher.job.agent import task_exit_code
from launcher.job.peers import end_for_failed_peer, record_outcome
from launcher.job.proctree import kill_program, kill_ranks_after
from launcher.job.requeue import outside_stop, requeue_decision
from launcher.job.slurm_calls import parse_job_state, requeues_preempted
from launcher.job.start_state import StartState
from launcher.job.stop_policy import RanksNow, is_early, on_stop, on_warning
from launcher.job.supervise import ending_line
from launcher.job.watchdog import STARTUP_SILENCE_S, silence_limit
from launcher.layout import RunLayout
from launcher.node_agent import NodeAgent

USR1, TERM = signal.SIGUSR1, signal.SIGTERM


def ranks_now(
    ranks: Tuple[int, ...] = (11, 12),
    expected: int = 2,
    running: bool = True,
    done: Tuple[str, ...] = (),
    sig: Optional[signal.Signals] = USR1,
    caught: bool = False,
) -> RanksNow:
    return RanksNow(ranks, expected, running, done, sig, caught)


# ---- the stop policy -------------------------------------------------------------------------------------------
WARNING_CASES = [
    # (what the ranks show, peer, signal sent or None, kill timer, words in the line)
    (ranks_now(), False, USR1, None, "sending SIGUSR1 to each of the 2 training processes (pids 11 12): checkpoint"),
    (ranks_now(sig=TERM, caught=True), False, TERM, None, "they handle SIGTERM, not SIGUSR1"),
    (ranks_now(sig=TERM), False, TERM, None, "they have no checkpoint signal handler"),
    (ranks_now(ranks=(11,)), False, None, None, "ignored, the program is finishing (1 of 2 training processes here"),
    (ranks_now(running=False, ranks=()), False, None, None, "2 of 2 training processes here have ended"),
    (ranks_now(sig=None, caught=True), False, None, None, "have put back their signal handlers"),
    (ranks_now(done=("n1",)), False, None, None, "; n1 ended)"),
    # the ranks' peers are gone: they are told to stop whatever their handlers say, and killed after the wait
    (ranks_now(sig=None, caught=True), True, TERM, 60.0, "sending SIGTERM to each of the 2"),
    (ranks_now(), True, USR1, 60.0, "sending SIGUSR1"),
    (ranks_now(done=("n1",)), True, None, None, "ignored, the program is finishing"),
]


@pytest.mark.parametrize("now, peer, sent, kill_after, words", WARNING_CASES)
def test_a_warning_reaches_ranks_that_can_checkpoint_and_no_others(now, peer, sent, kill_after, words):
    action = on_warning("time limit in 120s", peer, now, checkpoint_wait_s=60.0)
    assert action.send == sent
    assert action.kill_after_s == kill_after
    assert action.line.startswith("time limit in 120s: ")
    assert words in action.line


def test_peers_gone_kill_timer_has_a_floor():
    assert on_warning("w", True, ranks_now(), checkpoint_wait_s=1.0).kill_after_s == 5.0


STOP_CASES = [
    # (first stop, ranks handle SIGUSR1, signal received, sent, kill timer of a 30 s grace)
    (True, True, TERM, USR1, 28.0),
    (True, False, TERM, TERM, 28.0),
    (True, False, signal.SIGINT, signal.SIGINT, 28.0),
    (False, False, TERM, TERM, None),
]


@pytest.mark.parametrize("first, own, received, sent, kill_in", STOP_CASES)
def test_a_stop_signal_becomes_the_checkpoint_signal_where_ranks_have_one(first, own, received, sent, kill_in):
    action = on_stop(received.name, received, first, own, 2, stop_grace_s=30.0)
    assert action.send == sent
    assert action.kill_after_s == kill_in
    assert ("SIGKILL for what is left in 28s (the cluster gives 30s)" in action.line) == first


def test_a_short_grace_still_leaves_a_second():
    assert on_stop("SIGTERM", TERM, True, False, 1, stop_grace_s=2.0).kill_after_s == 1.0


@pytest.mark.parametrize(
    "left, early", [(None, False), (300.0, True), (119.0, True), (118.0, False), (60.0, False), (-5.0, False)]
)
def test_a_warning_long_before_the_time_limit_is_early(left, early):
    assert is_early(left, grace_s=120.0) is early


# ---- the requeue decision --------------------------------------------------------------------------------------
def asked(answer: Tuple[Optional[str], bool], calls: List[str], name: str = "state"):
    def ask():
        calls.append(name)
        return answer

    return ask


REQUEUE_CASES = [
    # (state flags, restart, Slurm's state, Slurm requeues preempted jobs, asks, line)
    (dict(), 0, ("RUNNING", False), False, True, ""),
    (dict(), 3, ("RUNNING", False), False, False, "not requeued: 3 requeues already (requeue.max_requeues=3)"),
    (dict(), 1, ("RUNNING", False), False, True, ""),
    (dict(preempted=True), 0, ("RUNNING", True), True, False, "not requeued: Slurm requeues (or ends) the job"),
    (dict(preempted=True), 0, ("RUNNING", True), False, True, ""),
    (dict(stopped_by="SIGTERM"), 0, ("CANCELLED", False), False, False, "Slurm is ending the job itself (state "),
    (dict(stopped_by="SIGTERM"), 0, ("RUNNING", True), False, False, "(state RUNNING, selected for preemption)"),
    (dict(peer_stopped=True), 0, ("COMPLETING", False), False, False, "(state COMPLETING)"),
    (dict(stopped_by="SIGTERM"), 0, ("RUNNING", False), False, True, ""),
    (dict(stopped_by="SIGTERM", slurm_keeps_it=True), 0, ("CANCELLED", False), False, True, ""),
]


@pytest.mark.parametrize("flags, restart, slurm_state, slurm_requeues, ask, line", REQUEUE_CASES)
def test_task_zero_requeues_only_what_slurm_will_not(flags, restart, slurm_state, slurm_requeues, ask, line):
    state = StartState("n0", "node1", interrupted=True, **flags)
    calls: List[str] = []
    decision = requeue_decision(state, restart, 3, asked(slurm_state, calls), lambda: slurm_requeues)
    assert decision.ask is ask
    assert line in decision.line and bool(line) == bool(decision.line)
    assert decision.to_slurm == decision.line.startswith(f"not requeued: {restart} requeue")
    # Slurm is asked for the job's state only after a stop from outside that nothing has judged yet
    stopped = (flags.get("stopped_by") or flags.get("peer_stopped")) and not flags.get("slurm_keeps_it")
    assert calls == (["state"] if stopped and not flags.get("preempted") else [])


OUTSIDE_CASES = [
    # (stopped by, Slurm's state, Slurm requeues preempted jobs, reason's words, preempted, Slurm keeps it)
    ("SIGTERM", ("RUNNING", False), False, "SIGTERM reached this task while Slurm kept the job running", False, True),
    (None, ("RUNNING", False), False, "another task's ranks were stopped by a signal while Slurm kept", False, True),
    ("SIGTERM", ("CANCELLED", False), False, None, False, False),
    ("SIGTERM", (None, False), False, None, False, False),
    ("SIGTERM", ("RUNNING", True), True, None, False, False),
    (
        "SIGTERM",
        ("RUNNING", True),
        False,
        "within its partition's GraceTime, which this Slurm ends for good",
        True,
        False,
    ),
]


@pytest.mark.parametrize("stopped_by, slurm_state, slurm_requeues, words, preempted, keeps", OUTSIDE_CASES)
def test_a_stop_slurm_did_not_mean_is_told_apart(stopped_by, slurm_state, slurm_requeues, words, preempted, keeps):
    found = outside_stop(stopped_by, lambda: slurm_state, lambda: slurm_requeues)
    assert (found.reason is None) == (words is None)
    assert words is None or words in (found.reason or "")
    assert (found.preempted, found.slurm_keeps_it) == (preempted, keeps)


EXIT_CASES = [
    # (state flags, launcher code, requeued, rank, exit code)
    (dict(), 0, False, 0, 0),
    (dict(), 2, False, 1, 2),
    (dict(interrupted=True), 0, True, 0, 0),
    (dict(interrupted=True), 143, False, 1, 0),
    (dict(interrupted=True), 0, False, 0, 1),  # not requeued: the run did not complete
    (dict(stopped_by="SIGTERM"), 143, False, 0, 143),
    (dict(stopped_by="SIGTERM"), 143, False, 1, 0),
    (dict(peer_failed=True), 137, False, 0, 0),
]


@pytest.mark.parametrize("flags, code, requeued, rank, expected", EXIT_CASES)
def test_a_task_fails_srun_only_when_it_failed_first(flags, code, requeued, rank, expected):
    assert task_exit_code(StartState("n0", "node1", **flags), code, requeued, rank) == expected


def test_the_end_of_the_launcher_is_worded_by_who_stopped_it():
    assert ending_line(0, StartState("n0", "x")) is None
    assert "ending the job" in (ending_line(1, StartState("n0", "x")) or "")
    assert "after SIGTERM (this task was stopped" in (
        ending_line(143, StartState("n0", "x", stopped_by="SIGTERM")) or ""
    )
    assert "another task failed" in (ending_line(137, StartState("n0", "x", peer_failed=True)) or "")
    assert "time limit/preemption" in (ending_line(0, StartState("n0", "x", interrupted=True)) or "")


# ---- Slurm's answers -------------------------------------------------------------------------------------------
def test_the_job_state_and_its_preemption_are_read_from_scontrol():
    line = "JobId=7 JobName=x JobState=RUNNING Reason=None PreemptTime=2026-12-06T10:00:00 SuspendTime=None"
    assert parse_job_state(line, ok=True) == ("RUNNING", True)
    assert parse_job_state(line.replace("PreemptTime=2026-12-06T10:00:00", "PreemptTime=None"), True) == (
        "RUNNING",
        False,
    )
    assert parse_job_state("JobId=7 JobState=COMPLETING PreemptTime=Unknown", True) == ("COMPLETING", False)
    assert parse_job_state("slurm_load_jobs error: Invalid job id specified", ok=False) == (None, False)


@pytest.mark.parametrize(
    "line, yes", [("slurm 22.05.8", False), ("slurm 24.11.1", True), ("slurm 26.05.0", True), ("", False)]
)
def test_which_slurm_requeues_a_preempted_job_itself(line, yes):
    assert requeues_preempted(line) is yes


# ---- the files between nodes -----------------------------------------------------------------------------------
def restart_folder(tmp_path: Path):
    logs = RunLayout(tmp_path / "run").attempt(1).restart(0)
    logs.root.mkdir(parents=True)
    return logs


@pytest.mark.parametrize(
    "flags, code, written",
    [
        (dict(), 0, "finished-n0"),
        (dict(), 1, "failed-n0"),
        (dict(stopped_by="SIGTERM"), 143, "stopped-n0"),
        (dict(interrupted=True), 0, "stopped-n0"),
        (dict(peer_failed=True), 137, None),
    ],
)
def test_each_task_records_one_outcome_for_the_others(tmp_path, flags, code, written):
    logs = restart_folder(tmp_path)
    record_outcome(logs, StartState("n0", "x", **flags), code)
    names = sorted(p.name for p in logs.root.iterdir())
    assert names == ([written] if written else [])


def test_a_task_ends_its_ranks_when_another_failed_first(tmp_path):
    logs = restart_folder(tmp_path)
    child = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE, start_new_session=True)
    said: List[str] = []
    state = StartState("n0", "x")
    logs.failed("n0").write_text("1\n")  # its own failure is not another's
    assert not end_for_failed_peer(child, logs, state, said.append)
    logs.failed("n1").write_text("1\n")
    assert end_for_failed_peer(child, logs, state, said.append, "received SIGTERM")
    assert child.wait(timeout=5) == -signal.SIGKILL
    assert state.peer_failed and said == ["received SIGTERM: n1 failed: ending this task's training processes now"]


def test_the_hang_clock_waits_for_the_first_line():
    assert silence_limit(30.0, ranks_spoke=True) == 30.0
    assert silence_limit(30.0, ranks_spoke=False) == STARTUP_SILENCE_S
    assert silence_limit(900.0, ranks_spoke=False) == 900.0


# ---- the process tree on real processes ------------------------------------------------------------------------
# a launcher that starts two ranks, each in a session of its own (as torch elastic does), and waits for them
LAUNCHER = """
import subprocess, sys, time
ranks = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
         for _ in range(2)]
print(" ".join(str(r.pid) for r in ranks), flush=True)
time.sleep(60)
"""


def start_launcher() -> Tuple["subprocess.Popen[bytes]", List[int]]:
    child = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, start_new_session=True)
    assert child.stdout is not None
    ranks = [int(p) for p in child.stdout.readline().split()]
    return child, ranks


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# As the agent does, the process that checks becomes a child subreaper: ranks whose launcher died stay below it.
AS_AGENT = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from launcher.job.proctree import become_subreaper, children, descendants, kill_program, wait_descendants_gone
from test_agent_parts import alive, start_launcher
import os
become_subreaper()
child, ranks = start_launcher()
assert sorted(children(child.pid)) == sorted(ranks), (children(child.pid), ranks)
assert set(descendants(os.getpid())) >= {child.pid, *ranks}
kill_program(child)
child.wait(timeout=5)
assert wait_descendants_gone(timeout=5) == [], "left behind"
assert not any(alive(p) for p in ranks), "a rank lives"
print("ok")
"""


def test_the_tree_below_the_agent_is_found_and_killed_whole():
    done = subprocess.run(
        [sys.executable, "-c", AS_AGENT, str(REPO), str(REPO / "tests")], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_ranks_left_after_a_failure_are_killed_and_the_launcher_is_not():
    child, ranks = start_launcher()
    try:
        started = time.time()
        kill_ranks_after(child, 0.5, lambda: False)
        assert time.time() - started >= 0.5
        time.sleep(0.2)
        assert not any(alive(p) for p in ranks)
        assert child.poll() is None  # the launcher is left to report which rank failed
    finally:
        kill_program(child)


def test_ranks_are_spared_when_the_agent_was_told_to_stop_meanwhile():
    child, ranks = start_launcher()
    stop = threading.Event()
    try:
        threading.Timer(0.2, stop.set).start()
        kill_ranks_after(child, 1.0, stop.is_set)
        assert all(alive(p) for p in ranks)
    finally:
        kill_program(child)


# ---- the pickled agent -----------------------------------------------------------------------------------------
def test_the_pickled_agent_is_configuration_only():
    agent = NodeAgent(run_id="r/0", launch_kind="accelerate", procs_per_node=2, tasks_per_node=1, max_requeues=3)
    assert [f.name for f in dataclasses.fields(agent)] == list(vars(agent))  # no runtime state beside its fields
    with pytest.raises(dataclasses.FrozenInstanceError):
        agent.run_id = "other"  # type: ignore[misc]
    again = pickle.loads(pickle.dumps(agent))
    assert again == agent and vars(again) == vars(agent)
    assert (agent.local_ranks, dataclasses.replace(agent, launch_kind="python").local_ranks) == (2, 1)
