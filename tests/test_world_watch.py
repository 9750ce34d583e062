"""Whether a training process is part of a torch.distributed world, read from the process table: real processes
with real TCP sockets on this machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Iterator, List

import pytest

from launcher.job.world import in_a_world

# a launcher that listens (its rendezvous store) and forks a child that has not yet executed its program
FORKING_LAUNCHER = """
import os, socket, sys, time
store = socket.socket()
store.bind(("127.0.0.1", 0))
store.listen()
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
print(child, flush=True)
time.sleep(60)
"""

# a rank that listens itself (gloo's pairs) or connects to the store at $MASTER_PORT
RANK = """
import os, socket, sys, time
s = socket.socket()
if sys.argv[1] == "listen":
    s.bind(("127.0.0.1", 0))
    s.listen()
else:
    s.connect(("127.0.0.1", int(os.environ["MASTER_PORT"])))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def procs() -> Iterator[List["subprocess.Popen[str]"]]:
    started: List["subprocess.Popen[str]"] = []
    yield started
    for p in started:
        p.kill()
        p.wait(timeout=10)


def start(procs: List["subprocess.Popen[str]"], code: str, *args: str, **env: str) -> "subprocess.Popen[str]":
    p = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env={**os.environ, **env}
    )
    procs.append(p)
    return p


def test_a_rank_that_listens_is_in_a_world(procs):
    rank = start(procs, RANK, "listen")
    assert rank.stdout is not None and rank.stdout.readline() == "ready\n"
    assert in_a_world(rank.pid)


def test_a_rank_connected_to_its_master_port_is_in_a_world(procs):
    store = socket.socket()
    store.bind(("127.0.0.1", 0))
    store.listen()
    try:
        rank = start(procs, RANK, "connect", MASTER_PORT=str(store.getsockname()[1]))
        assert rank.stdout is not None and rank.stdout.readline() == "ready\n"
        assert in_a_world(rank.pid)
    finally:
        store.close()


def test_a_process_without_sockets_is_not_in_a_world(procs):
    plain = start(procs, "import time; print('ready', flush=True); time.sleep(60)")
    assert plain.stdout is not None and plain.stdout.readline() == "ready\n"
    assert not in_a_world(plain.pid)


def test_a_child_that_only_holds_its_launchers_listening_socket_is_not_in_a_world(procs):
    """Between fork and exec a rank holds the launcher's sockets: its rendezvous store's is not the rank's world."""
    launcher = start(procs, FORKING_LAUNCHER)
    assert launcher.stdout is not None
    child = int(launcher.stdout.readline())
    try:
        assert in_a_world(launcher.pid)
        assert not in_a_world(child)
    finally:
        os.kill(child, 9)  # the launcher's own end (the fixture) then leaves it to init to reap
