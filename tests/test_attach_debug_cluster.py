"""`danlu attach` and `danlu debug` on the test cluster, typed into a terminal (tmux): a shell inside a running
2-node run's job on its second node, and a shell in a new allocation whose danlu-run trains to the end.

The test cluster's nodes are all this machine: `hostname` prints its name on every node, and Slurm's node name
(SLURMD_NODENAME, what `hostname` prints on a real cluster) says which node a shell is on."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator

import pytest
from danlu_helpers import REPO, danlu, danlu_env, status_json, submit_json, wait_status  # noqa: F401

pytestmark = pytest.mark.slurm

TINY = ["experiment=tiny_ibq", "launch=torchrun", "cluster=testcluster", "resources.gpus_per_node=1"]


class Terminal:
    """A tmux session running one danlu command, typed into and read as a user would."""

    def __init__(self, argv: list[str], env: Dict[str, str]) -> None:
        self.name = f"danlu-test-{uuid.uuid4().hex[:8]}"
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in {**env, "PATH": path}.items())
        danlu_cmd = shlex.join([sys.executable, "-m", "launcher.cli", *argv])
        line = f"cd {shlex.quote(str(REPO))} && env {exports} {danlu_cmd}; echo DANLU-EXIT=$?; sleep 600"
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                "200",
                "-y",
                "50",
                "bash --norc -c " + shlex.quote(line),
            ],
            check=True,
        )

    def screen(self) -> str:
        done = subprocess.run(["tmux", "capture-pane", "-p", "-J", "-S", "-200", "-t", self.name], capture_output=True)
        return done.stdout.decode(errors="replace")

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, text, "Enter"], check=True)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        end = time.time() + timeout
        while time.time() < end:
            found = re.search(pattern, self.screen(), re.M)
            if found:
                return found
            time.sleep(0.5)
        raise AssertionError(f"no {pattern!r} on the screen within {timeout}s:\n{self.screen()[-3000:]}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for t in opened:
        t.close()


def test_attach_opens_a_shell_on_the_chosen_node_of_a_running_run(slurm_cluster, danlu_env, terminals):
    over = [*TINY, "resources.nodes=2", "args.max_train_steps=400", "args.sleep_per_step=0.5"]
    run = submit_json(*over, "--name", "attach-2n", env=danlu_env)["runs"][0]["run"]
    try:
        (item,) = wait_status(run, danlu_env, timeout=240, done=lambda items: items[0]["state"] == "RUNNING")
        term = Terminal(["attach", run, "--node", "1"], danlu_env)
        terminals.append(term)
        term.wait_for(r"\(danlu attach .*\) node2:", timeout=60)
        term.type("echo NODE=$SLURMD_NODENAME HOST=$(hostname) RUN=$DANLU_RUN_ID")
        term.wait_for(rf"^NODE=node2 HOST={re.escape(socket.gethostname())} RUN={re.escape(run)}$")
        term.type("echo CODE=$PYTHONPATH")  # the run's frozen code first on the import path, as in its job
        term.wait_for(r"^CODE=/\S*/\.danlu-code/trees/[0-9a-f]+(:|$)")
        term.type("python -c 'import torch, sys; print(\"PY=\" + sys.executable)'")
        term.wait_for(rf"^PY={re.escape(sys.executable)}$")
        term.type("exit")
        term.wait_for(r"^DANLU-EXIT=0$")
        assert status_json(run, env=danlu_env)[0]["state"] == "RUNNING"
        done = danlu("attach", run, "--", "hostname", env=danlu_env, timeout=60)
        assert (done.returncode, done.stdout) == (0, socket.gethostname() + "\n"), done.stderr
        done = danlu("attach", run, "--node", "1", "--", "printenv", "SLURMD_NODENAME", env=danlu_env, timeout=60)
        assert (done.returncode, done.stdout) == (0, "node2\n"), done.stderr
    finally:
        danlu("cancel", run, env=danlu_env)
    assert status_json(run, env=danlu_env)[0]["state"] == "CANCELLED"


def _queued(job_id: str) -> bool:
    done = subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True)
    return bool(done.stdout.strip())


def test_debug_opens_a_shell_in_an_allocation_whose_danlu_run_trains(slurm_cluster, danlu_env, terminals):
    term = Terminal(["debug", *TINY, "args.max_train_steps=3"], danlu_env)
    terminals.append(term)
    job_id = term.wait_for(r"Granted job allocation (\d+)", timeout=120).group(1)
    try:
        term.wait_for(r"the launch command of the run \(nothing recorded\): torchrun .*train\.py .*--max_train_steps=3")
        first = subprocess.run(["squeue", "-h", "-o", "%N", "-j", job_id], capture_output=True, text=True).stdout
        term.type("echo NODE=$SLURMD_NODENAME; python -c 'import torch; print(\"TORCH-OK\")'")
        term.wait_for(rf"^NODE={re.escape(first.strip())}$")
        term.wait_for(r"^TORCH-OK$")
        term.type("danlu-run")
        term.wait_for(r"done steps=3$", timeout=120)
        term.type("exit")
        term.wait_for(r"^DANLU-EXIT=0$")
        end = time.time() + 20
        while _queued(job_id) and time.time() < end:
            time.sleep(1)
        assert not _queued(job_id), f"allocation {job_id} still listed by squeue"
    finally:
        term.close()
    listed = danlu("status", "--all", "--json", env=danlu_env)
    assert listed.stdout.strip() in ("", "[]"), listed.stdout  # nothing recorded
