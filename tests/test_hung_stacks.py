"""The stacks of a hung node's ranks: recorded on real processes with py-spy or, without a tracer, with faulthandler;
read back from both tools' formats; summed up in the line that ends the job, across nodes; and the run's reason."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from launcher.job import stacks as stacks_module
from launcher.job import watchdog
from launcher.job.peers import end_for_failed_peer
from launcher.job.proctree import descendants, kill
from launcher.job.stacks import record_hung_stacks, tracer_error
from launcher.job.start_state import StartState
from launcher.job.stops import StopHandlers
from launcher.job.watchdog import watch_silence
from launcher.layout import RestartLayout, RunLayout
from launcher.node_agent import NodeAgent
from launcher.state.reasons import classify
from launcher.state.stack_text import Frame, hang_summary, parse_sections, parse_stacks, program_files

# a rank that blocks, as one waiting for a peer in a collective does; rank 2 blocks elsewhere. It says "ready"
# from a thread of its own once both other threads block in their wait's lock, and that thread then ends.
TRAIN = """\
import linecache
import os
import sys
import threading
import time


def wait_for_peer():
    threading.Event().wait()


def load_batch():
    threading.Event().wait()


def blocked(frame, waits):
    if frame.f_code is not threading.Condition.wait.__code__ or "gotit" not in frame.f_locals:
        return False  # not yet at the acquire that blocks
    if linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip() != "waiter.acquire()":
        return False
    while frame is not None and waits.get(frame.f_code) != frame.f_lineno:
        frame = frame.f_back
    return frame is not None


def say_ready_once_blocked():
    waits = {f.__code__: f.__code__.co_firstlineno + 1 for f in (wait_for_peer, load_batch)}
    me = threading.get_ident()
    while True:
        others = [f for ident, f in sys._current_frames().items() if ident != me]
        if len(others) == 2 and all(blocked(f, waits) for f in others):
            print("ready", flush=True)
            return
        time.sleep(0.01)


def main():
    threading.Thread(target=load_batch, name="loader", daemon=True).start()
    threading.Thread(target=say_ready_once_blocked, name="ready").start()
    if os.environ.get("RANK") == "2":
        load_batch()
    wait_for_peer()


main()
"""
WAIT_LINE = 9  # threading.Event().wait() in wait_for_peer
LOAD_LINE = 13  # ... in load_batch
MAIN_LINE = 42  # wait_for_peer() in main
MODULE_LINE = 45  # main()
assert (
    TRAIN.splitlines()[WAIT_LINE - 1].strip()
    == TRAIN.splitlines()[LOAD_LINE - 1].strip()
    == ("threading.Event().wait()")
)
assert TRAIN.splitlines()[MAIN_LINE - 1].strip() == "wait_for_peer()"
assert TRAIN.splitlines()[MODULE_LINE - 1] == "main()"


def wait_until_ready(p: "subprocess.Popen[bytes]") -> None:
    """Until the rank says "ready" and the thread that said it has ended, leaving its two waiting threads."""
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    deadline = time.time() + 30
    while len(os.listdir(f"/proc/{p.pid}/task")) != 2:
        assert time.time() < deadline, "the thread that said ready did not end"
        time.sleep(0.01)


# a per-node launcher: its ranks in sessions of their own, each rank's stderr a file of its own (torch elastic)
LAUNCHER = (
    """
import os, subprocess, sys, time
"""
    + inspect.getsource(wait_until_ready)
    + """
train, first, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ranks = []
for r in (first, first + 1):
    err = open(os.path.join(folder, f"rank{r}.stderr"), "w")
    env = dict(os.environ, RANK=str(r))
    ranks.append(subprocess.Popen([sys.executable, train], env=env, stdout=subprocess.PIPE, stderr=err,
                                  start_new_session=True))
for p in ranks:
    wait_until_ready(p)
print("started", flush=True)
for p in ranks:
    p.wait()
"""
)


def restart_folder(tmp_path: Path) -> RestartLayout:
    logs = RunLayout(tmp_path / "run").attempt(1).restart(0)
    logs.root.mkdir(parents=True)
    return logs


@pytest.fixture
def train(tmp_path: Path) -> Path:
    path = tmp_path / "work" / "train.py"
    path.parent.mkdir()
    path.write_text(TRAIN)
    return path


@pytest.fixture
def procs() -> Iterator[List["subprocess.Popen[bytes]"]]:
    started: List["subprocess.Popen[bytes]"] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def start_rank(train: Path, rank: int, stderr: Any, procs: List["subprocess.Popen[bytes]"]) -> int:
    env = dict(os.environ, PYTHONFAULTHANDLER="1", RANK=str(rank))
    p = subprocess.Popen([sys.executable, str(train)], env=env, stdout=subprocess.PIPE, stderr=stderr)
    procs.append(p)
    wait_until_ready(p)
    return int(p.pid)


def two_ranks(train: Path, tmp_path: Path, procs: List["subprocess.Popen[bytes]"]) -> Dict[int, int]:
    """Ranks 0 and 1, each with its stderr in a file of its own."""
    return {r: start_rank(train, r, open(tmp_path / f"rank{r}.stderr", "wb"), procs) for r in (0, 1)}


def no_tracer() -> None:
    return None


# ---- recording -------------------------------------------------------------------------------------------------
def test_without_a_tracer_faulthandler_records_every_thread_of_each_rank(tmp_path, train, procs):
    logs = restart_folder(tmp_path)
    pids = two_ranks(train, tmp_path, procs)
    said: List[str] = []
    report = record_hung_stacks(pids, logs, said.append, "node0", tracer=no_tracer)
    assert report.ways == {0: "faulthandler", 1: "faulthandler"} and report.path == logs.stacks("node0")
    assert report.seconds < 5.0
    text = logs.stacks("node0").read_text()
    for rank, pid in pids.items():
        assert f"rank {rank} (pid {pid}) via faulthandler\n" in text
    assert text.count(f'train.py", line {WAIT_LINE} in wait_for_peer') == 2
    assert text.count(f'train.py", line {LOAD_LINE} in load_batch') == 2  # the other thread too
    stacks = parse_stacks(text)
    assert [(f.function, f.line) for f in stacks[0] if f.file == str(train)] == [
        ("wait_for_peer", WAIT_LINE),
        ("main", MAIN_LINE),
        ("<module>", MODULE_LINE),
    ]
    assert hang_summary(stacks, program_files([str(train.parent)])) == f"2 of 2 ranks in wait (train.py:{WAIT_LINE})"
    assert [p.wait(timeout=5) for p in procs] == [-signal.SIGABRT] * 2
    assert said == [f"stacks of 2 training processes in stacks-node0.txt (faulthandler, {report.seconds:.1f}s)"]


def test_a_dump_through_a_pipe_is_read_from_the_log_the_agent_copies_it_into(tmp_path, train, procs):
    logs = restart_folder(tmp_path)
    pid = start_rank(train, 0, subprocess.STDOUT, procs)
    out = procs[0].stdout
    assert out is not None

    def copy() -> None:  # as the agent copies its program's output into the task's log
        with open(logs.log("rank0"), "ab", buffering=0) as log:
            for line in iter(out.readline, b""):
                log.write(line)

    threading.Thread(target=copy, daemon=True).start()
    report = record_hung_stacks({0: pid}, logs, lambda _: None, "rank0", tracer=no_tracer)
    assert report.ways == {0: "faulthandler"}
    assert f"line {WAIT_LINE} in wait_for_peer" in logs.stacks("rank0").read_text()


def test_a_tracer_that_cannot_attach_falls_back_to_faulthandler(tmp_path, train, procs):
    logs = restart_folder(tmp_path)
    denied = tmp_path / "py-spy"
    denied.write_text("#!/bin/sh\necho 'Error: Permission Denied (os error 13)' >&2\nexit 1\n")
    denied.chmod(0o755)
    report = record_hung_stacks(two_ranks(train, tmp_path, procs), logs, lambda _: None, "node0", lambda: str(denied))
    assert report.ways == {0: "faulthandler", 1: "faulthandler"}


def test_a_rank_that_already_ended_has_no_stack_and_says_why(tmp_path):
    logs = restart_folder(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    report = record_hung_stacks({3: gone.pid}, logs, lambda _: None, "node1", tracer=no_tracer)
    assert report.ways == {3: "none"}
    [section] = parse_sections(logs.stacks("node1").read_text())
    assert (section.rank, section.way, section.note) == (3, "none", "the process had ended")


def py_spy() -> str:
    """py-spy on PATH or beside this interpreter; the test skips without it."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        why = "py-spy is not installed (the train extra has it): the tracer's way is not tested"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why, pytrace=False)  # CI sets up the train extra: a missing py-spy is a missing install step
        pytest.skip(why)
    return found


def py_spy_that_reads(pid: int) -> str:
    """py-spy, once it has read `pid`; the test skips where ptrace is not permitted, except in CI."""
    found = py_spy()
    if subprocess.run([found, "dump", "--pid", str(pid)], capture_output=True).returncode != 0:
        if os.environ.get("CI", "").lower() != "true":
            pytest.skip("py-spy cannot read another process here (ptrace not permitted)")
    return found


def test_py_spy_reads_the_ranks_and_leaves_them_running(tmp_path, train, procs):
    logs = restart_folder(tmp_path)
    ranks = two_ranks(train, tmp_path, procs)
    tracer = py_spy_that_reads(ranks[0])
    report = record_hung_stacks(ranks, logs, lambda _: None, "node0", lambda: tracer)
    assert set(report.ways.values()) <= {"py-spy", "py-spy --native"}
    assert all(p.poll() is None for p in procs)
    text = logs.stacks("node0").read_text()
    assert text.count(f"wait_for_peer ({train}:{WAIT_LINE})") == 2
    summary = hang_summary(parse_stacks(text), program_files([str(train.parent)]))
    assert summary == f"2 of 2 ranks in Condition.wait (train.py:{WAIT_LINE})"


def test_a_rank_whose_native_frames_are_slow_to_read_is_read_without_them_and_left_running(tmp_path, train, procs):
    """Reading a big library's symbols can outlast the native dump's share of the time on a busy node."""
    logs = restart_folder(tmp_path)
    ranks = two_ranks(train, tmp_path, procs)
    slow = tmp_path / "py-spy"
    real = py_spy_that_reads(ranks[0])
    slow.write_text(f'#!/bin/sh\ncase " $* " in *" --native "*) exec sleep 60;; esac\nexec {real} "$@"\n')
    slow.chmod(0o755)
    report = record_hung_stacks(ranks, logs, lambda _: None, "node0", lambda: str(slow), limit_s=6.0)
    assert report.ways == {0: "py-spy", 1: "py-spy"}
    assert all(p.poll() is None for p in procs)
    sections = parse_sections(logs.stacks("node0").read_text())
    assert [s.note for s in sections] == ["no native frames (py-spy dump --native took over 1s)"] * 2
    assert all(f"wait_for_peer ({train}:{WAIT_LINE})" in "\n".join(s.body) for s in sections)


PY_SPY_BUSY = """\
Error: Failed to get stack traces

Caused by:
    0: Failed to suspend process
    1: EPERM: Operation not permitted
    2: EPERM: Operation not permitted

Stack backtrace:
   0: <E as anyhow::context::ext::StdError>::ext_context
   1: py_spy::python_spy::PythonSpy::get_stack_traces
"""


@pytest.mark.parametrize(
    "stderr, words",
    [
        (PY_SPY_BUSY, "Failed to get stack traces: Failed to suspend process: EPERM: Operation not permitted"),
        ("Error: Permission Denied (os error 13)\n", "Permission Denied (os error 13)"),
        ("", ""),
    ],
    ids=["another tracer holds the rank", "no permission", "silent"],
)
def test_a_tracers_error_is_one_line_without_its_backtrace(stderr, words):
    assert tracer_error(stderr) == words


# ---- the two formats read back ---------------------------------------------------------------------------------
STACKS_FILE = """\
# the training processes of node0 on node1 at 2026-05-01T12:00:00
rank 0 (pid 101) via py-spy --native
Process 101: /home/ana/proj/.venv/bin/python /home/ana/proj/train.py
Python v3.11.7 (/usr/bin/python3.11)

Thread 130 (idle): "pin_memory"
    _worker_loop (/home/ana/proj/.venv/lib/python3.11/site-packages/torch/utils/data/_utils/pin_memory.py:52)
Thread 101 (idle): "MainThread"
    0x7fe2024a3f16 (libc.so.6)
    c10d::ProcessGroupGloo::AsyncWork::wait(std::chrono::duration<long, std::ratio<1l, 1000l> >) (libtorch_cpu.so)
    gloo::transport::tcp::UnboundBuffer::waitRecv (/build/gloo/transport/tcp/unbound_buffer.cc:81)
    all_reduce (/home/ana/proj/.venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py:2806)
    wrapper (/home/ana/proj/.venv/lib/python3.11/site-packages/torch/distributed/c10d_logger.py:81)
    train_step (/home/ana/proj/train.py:412)
    <module> (/home/ana/proj/train.py:450)
rank 2 (pid 103) via faulthandler
Fatal Python error: Aborted

Thread 0x00007f0a2c000640 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 327 in wait
  File "/usr/lib/python3.11/threading.py", line 1002 in _bootstrap

Current thread 0x00007f0a2c23b80 (most recent call first):
  File "/home/ana/proj/.venv/lib/python3.11/site-packages/torch/utils/data/dataloader.py", line 631 in __next__
  File "/home/ana/proj/train.py", line 388 in train_step
  File "/home/ana/proj/train.py", line 450 in <module>

Extension modules: numpy.core._multiarray_umath, torch._C (total: 2)
rank 3 (pid 104) via none: the process had ended
"""


def test_both_formats_give_each_rank_its_main_thread_innermost_first():
    stacks = parse_stacks(STACKS_FILE)
    assert sorted(stacks) == [0, 2, 3]
    assert stacks[0][:3] == [
        Frame("0x7fe2024a3f16", "libc.so.6", 0),
        Frame(
            "c10d::ProcessGroupGloo::AsyncWork::wait(std::chrono::duration<long, std::ratio<1l, 1000l> >)",
            "libtorch_cpu.so",
            0,
        ),
        Frame("gloo::transport::tcp::UnboundBuffer::waitRecv", "/build/gloo/transport/tcp/unbound_buffer.cc:81", 0),
    ]
    assert stacks[0][3] == Frame(
        "all_reduce", "/home/ana/proj/.venv/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py", 2806
    )
    assert [f.function for f in stacks[2]] == ["__next__", "train_step", "<module>"]
    assert stacks[3] == []
    assert [(s.rank, s.pid, s.way) for s in parse_sections(STACKS_FILE)] == [
        (0, 101, "py-spy --native"),
        (2, 103, "faulthandler"),
        (3, 104, "none"),
    ]
    summary = hang_summary(stacks, program_files(["/home/ana/proj"]))
    assert summary == (
        "rank 0 in all_reduce (train.py:412), rank 2 in __next__ (train.py:388), rank 3 with no stack read"
    )


# ---- where the ranks are, in one line ----------------------------------------------------------------------------
VENV = "/home/ana/proj/.venv/lib/python3.11/site-packages"
IN_ALL_REDUCE = [
    Frame("all_reduce", f"{VENV}/torch/distributed/distributed_c10d.py", 2806),
    Frame("train_step", "/home/ana/proj/train.py", 412),
    Frame("main", "/home/ana/proj/train.py", 440),
]
IN_NEXT = [
    Frame("DataLoader.__next__", f"{VENV}/torch/utils/data/dataloader.py", 631),
    Frame("train_step", "/home/ana/proj/train.py", 388),
]
IN_STDLIB = [Frame("Condition.wait", "/usr/lib/python3.11/threading.py", 327)]
NATIVE_ONLY = [Frame("0x7fe2024a3f16", "libc.so.6", 0)]
IN_BACKWARD = [  # DDP's gradient all-reduce, read with the native frames
    Frame("std::condition_variable::wait", "libstdc++.so.6.0.30", 0),
    Frame("c10d::Reducer::finalize_backward()", f"{VENV}/torch/lib/libtorch_cpu.so", 0),
    Frame("THPEngine_run_backward", f"{VENV}/torch/lib/libtorch_python.so", 0),
    Frame("_engine_run_backward", f"{VENV}/torch/autograd/graph.py", 979),
    Frame("main", "/home/ana/proj/train.py", 445),
]
IN_AUTOGRAD = [Frame("torch::autograd::Engine::thread_main", "libtorch_cpu.so", 0), *IN_BACKWARD[3:]]
A, B = "all_reduce (train.py:412)", "DataLoader.__next__ (train.py:388)"
D, E = "c10d::Reducer::finalize_backward (train.py:445)", "_engine_run_backward (train.py:445)"


@pytest.mark.parametrize(
    "stacks, expected",
    [
        ({r: IN_ALL_REDUCE for r in range(4)}, f"4 of 4 ranks in {A}"),
        ({0: IN_ALL_REDUCE, 1: IN_ALL_REDUCE, 2: IN_NEXT, 3: IN_ALL_REDUCE}, f"3 of 4 ranks in {A}, rank 2 in {B}"),
        ({0: IN_NEXT, 1: IN_ALL_REDUCE, 2: IN_NEXT, 3: IN_ALL_REDUCE}, f"2 of 4 ranks in {B}, ranks 1,3 in {A}"),
        ({0: IN_ALL_REDUCE}, f"rank 0 in {A}"),
        ({0: IN_STDLIB, 1: IN_STDLIB}, "2 of 2 ranks in Condition.wait (threading.py:327)"),
        ({0: IN_ALL_REDUCE, 1: NATIVE_ONLY, 2: []}, f"rank 0 in {A}, ranks 1,2 with no stack read"),
        ({0: [], 1: []}, "ranks 0,1 with no stack read"),
        ({0: IN_BACKWARD, 1: IN_BACKWARD}, f"2 of 2 ranks in {D}"),
        ({0: IN_BACKWARD[3:], 1: IN_BACKWARD, 2: IN_BACKWARD[3:], 3: IN_NEXT}, f"3 of 4 ranks in {D}, rank 3 in {B}"),
        ({0: IN_BACKWARD[3:], 1: IN_BACKWARD[3:]}, f"2 of 2 ranks in {E}"),
        ({0: IN_BACKWARD, 1: IN_AUTOGRAD, 2: IN_BACKWARD[3:]}, f"2 of 3 ranks in {E}, rank 0 in {D}"),
        ({0: IN_AUTOGRAD, 1: IN_BACKWARD[3:]}, f"2 of 2 ranks in {E}"),
        ({}, ""),
    ],
    ids=[
        "equal",
        "one differs",
        "two groups",
        "one rank",
        "no program frame",
        "no stack",
        "none read",
        "native collective",
        "native frames of some ranks read",
        "no native frames read",
        "native frames disagree",
        "native frames without a collective",
        "empty",
    ],
)
def test_the_summary_groups_ranks_by_where_they_are(stacks, expected):
    assert hang_summary(stacks, program_files(["/home/ana/proj"])) == expected


@pytest.mark.parametrize(
    "path, mine",
    [
        ("/home/ana/proj/train.py", True),
        ("/home/ana/proj/models/vq.py", True),
        ("train.py", True),
        (f"{VENV}/torch/nn/modules/module.py", False),
        ("/usr/lib/python3.11/threading.py", False),
        ("<frozen runpy>", False),
        ("/home/ana/project-b/train.py", False),
        ("/code/trees/k1/train.py", True),
    ],
)
def test_the_program_is_the_workdir_and_its_frozen_code_without_installed_packages(path, mine):
    assert program_files(["/home/ana/proj", "/code/trees/k1"])(path) is mine


# ---- the watchdog ----------------------------------------------------------------------------------------------
def start_node(train: Path, first_rank: int, folder: Path) -> "subprocess.Popen[bytes]":
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    child = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(train), str(first_rank), str(folder)],
        env=env,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert child.stdout is not None and child.stdout.readline() == b"started\n"
    return child


def kill_tree(child: "subprocess.Popen[bytes]") -> None:
    """kill_program for one of two agents in one process: its own launcher and ranks, not the other's."""
    for pid in [child.pid, *descendants(child.pid)]:
        kill(pid, signal.SIGKILL)


def watch_nodes(
    agent: NodeAgent,
    nodes: Dict[str, "subprocess.Popen[bytes]"],
    states: Dict[str, StartState],
    logs: RestartLayout,
) -> Dict[str, List[str]]:
    """Each node's watchdog in a thread of its own until all have ended; what each agent said."""
    said: Dict[str, List[str]] = {tag: [] for tag in nodes}
    for tag in nodes:
        logs.agent_log(tag).touch()
    watchers = [
        threading.Thread(target=watch_silence, args=(agent, nodes[t], states[t], logs, said[t].append)) for t in nodes
    ]
    try:
        for w in watchers:
            w.start()
        for w in watchers:
            w.join(timeout=30)
    finally:
        stop_nodes(nodes)
    return said


def stop_nodes(nodes: Dict[str, "subprocess.Popen[bytes]"]) -> None:
    for child in nodes.values():
        kill_tree(child)
        child.wait(timeout=10)


def test_a_hung_node_records_every_nodes_ranks_and_names_where_they_were(tmp_path, train, monkeypatch, capsys):
    monkeypatch.setattr(stacks_module, "find_tracer", no_tracer)
    monkeypatch.setattr(watchdog, "kill_program", kill_tree)
    monkeypatch.setenv("DANLU_WORKDIR", str(train.parent))
    logs = restart_folder(tmp_path)
    agent = NodeAgent("r/0", "torchrun", procs_per_node=2, tasks_per_node=1, max_requeues=0, hang_timeout_s=12.0)
    nodes = {tag: start_node(train, 2 * n, tmp_path) for n, tag in enumerate(("node0", "node1"))}
    states = {
        "node0": StartState("node0", "host0", world=4, last_output=time.time() - 13, ranks_spoke=True),
        "node1": StartState("node1", "host1", world=4, last_output=time.time() - 5, ranks_spoke=True),
    }
    started = time.time()
    said = watch_nodes(agent, nodes, states, logs)
    took = time.time() - started
    assert all(s.ended.is_set() for s in states.values()) and took < 15
    assert states["node1"].peer_failed and not states["node0"].peer_failed
    assert (
        said["node1"][0] == "node0 is hung: recording the stacks of this task's 2 training processes before ending them"
    )
    line = said["node0"][-1]
    where = f"3 of 4 ranks in wait (train.py:{WAIT_LINE}), rank 2 in wait (train.py:{LOAD_LINE})"
    assert re.fullmatch(
        rf"hung: {re.escape(where)}; no output from the training processes on host0 for 1\ds "
        r"\(launch\.hang_timeout_s=12\); stacks in stacks-node0\.txt, stacks-node1\.txt \(faulthandler\); "
        r"ending the job",
        line,
    ), line
    assert f"[danlu agent] {line}" in capsys.readouterr().err
    reason = classify("FAILED", "134:0", "host[0-1]", ["step=3", f"[danlu agent] {line}"])
    assert re.fullmatch(rf"hung: {re.escape(where)}; no output on host0 for 1\ds", reason or ""), reason


def test_ranks_left_running_by_py_spy_end_only_once_every_node_has_its_stacks(tmp_path, train, monkeypatch):
    """A node that sees the hang late still finds its ranks waiting: the nodes that saw it first do not end theirs
    (which would break the collective the late node's ranks wait in) before its stacks are recorded."""
    monkeypatch.setenv("DANLU_WORKDIR", str(train.parent))
    ended_at: Dict[int, float] = {}

    def kill_and_note(child: "subprocess.Popen[bytes]") -> None:
        ended_at[child.pid] = time.time()
        kill_tree(child)

    monkeypatch.setattr(watchdog, "kill_program", kill_and_note)
    logs = restart_folder(tmp_path)
    agent = NodeAgent("r/0", "torchrun", procs_per_node=2, tasks_per_node=1, max_requeues=0, hang_timeout_s=12.0)
    tags = ("node0", "node1", "node2")
    nodes = {tag: start_node(train, 2 * n, tmp_path) for n, tag in enumerate(tags)}
    try:
        tracer = py_spy_that_reads(descendants(nodes["node0"].pid)[0])
    except BaseException:  # a skip too: the ranks wait forever
        stop_nodes(nodes)
        raise
    monkeypatch.setattr(stacks_module, "find_tracer", lambda: tracer)
    # node0 is hung; node1 looks for a hung peer at once; node2 only once its ranks are 5 s quiet, 2.5 s later
    quiet = {"node0": 13.0, "node1": 6.0, "node2": 2.5}
    states = {
        t: StartState(t, f"host{n}", world=6, last_output=time.time() - quiet[t], ranks_spoke=True)
        for n, t in enumerate(tags)
    }
    said = watch_nodes(agent, nodes, states, logs)
    assert all(s.ended.is_set() for s in states.values())
    assert said["node2"][0].startswith("node0 is hung: recording the stacks"), said["node2"]
    recorded = {t: logs.stacks(t).stat().st_mtime for t in tags}
    ended = {t: ended_at[nodes[t].pid] for t in tags}
    assert min(ended.values()) >= max(recorded.values()), (ended, recorded)
    stacks = parse_stacks("".join(p.read_text() for p in logs.stacks_files()))
    assert sorted(stacks) == [0, 1, 2, 3, 4, 5] and all(stacks.values()), stacks
    assert said["node0"][-1].startswith("hung: 5 of 6 ranks in "), said["node0"][-1]


def test_a_hang_without_stacks_keeps_the_reason_of_the_silence():
    lines = [
        "[danlu agent] hung: no output from the training processes on node2 for 15s (launch.hang_timeout_s=15); "
        "no stack read (no training process was running); ending the job"
    ]
    assert classify("FAILED", "137:0", "node[1-2]", lines) == (
        "hung: no output from the training processes on node2 for 15s (launch.hang_timeout_s=15)"
    )


def test_while_the_agent_ends_hung_ranks_neither_slurms_signals_nor_a_failed_peer_interfere(tmp_path):
    """The stacks are being recorded: a stop signal is not a stop for a requeue, and another task's failure (the
    hung ranks' own peers breaking) does not kill the ranks before their dump."""
    logs = restart_folder(tmp_path)
    child = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE, start_new_session=True)
    agent = NodeAgent("r/0", "python", procs_per_node=1, tasks_per_node=1, max_requeues=1, hang_timeout_s=15.0)
    state = StartState("rank0", "host0")
    said: List[str] = []
    try:
        assert state.claim_ending("hung") and not state.claim_ending("rank1 is hung")
        handlers = StopHandlers(agent, state, child, logs, said.append, None)
        handlers.forward(signal.SIGTERM, None)
        handlers.forward(signal.SIGUSR2, None)
        handlers.handlers.close()
        assert not state.stopping() and child.poll() is None
        assert said == [
            f"received {name}: ignored, the agent is ending the training processes (hung)"
            for name in ("SIGTERM", "SIGUSR2")
        ]
        logs.failed("rank1").write_text("1\n")
        assert not end_for_failed_peer(child, logs, state, said.append) and child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_a_node_whose_ranks_still_write_never_looks_for_a_hung_peer(tmp_path, monkeypatch):
    logs = restart_folder(tmp_path)
    logs.hung("node0").write_text(f"{time.time():.3f} {time.time() + 10:.3f}\n")
    looked: List[str] = []
    monkeypatch.setattr(RestartLayout, "hung_tags", lambda self: looked.append("ls") or ["node0"])
    agent = NodeAgent("r/0", "torchrun", procs_per_node=2, tasks_per_node=1, max_requeues=0, hang_timeout_s=60.0)
    state = StartState("node1", "host1", world=4, last_output=time.time() + 2, ranks_spoke=True)
    child = subprocess.Popen(["sleep", "1.6"], stdout=subprocess.PIPE, start_new_session=True)
    watch_silence(agent, child, state, logs, lambda line: pytest.fail(line))
    assert child.wait() == 0 and not state.ending and looked == []
    state.last_output = time.time() - 5  # silent as a hung peer makes it: it looks, and ends its ranks
    child = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE, start_new_session=True)
    monkeypatch.setattr(stacks_module, "find_tracer", no_tracer)
    watch_silence(agent, child, state, logs, lambda line: None)
    assert looked and state.ending == "node0 is hung" and state.peer_failed and child.wait(timeout=5) < 0
