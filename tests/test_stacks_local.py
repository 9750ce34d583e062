"""`danlu stacks RUN` on a run of the embedded local cluster: its ranks' stacks while it trains, which it goes on
doing; and the refusals, each one line with a hint and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from danlu_helpers import REPO, danlu, private_env

from launcher.layout import SweepLayout

LOCAL = ["experiment=tiny_ibq", "cluster=local", "resources.gpus_per_node=2", "args.sleep_per_step=0.5"]


def _wait_for_step(restart_dir: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any("step=1 " in p.read_text(errors="replace") for p in restart_dir.glob("*.log")):
            return
        time.sleep(0.5)
    raise AssertionError(f"no step logged in {restart_dir}")


def test_stacks_of_a_local_run_are_read_while_it_trains(tmp_path):
    env = private_env(tmp_path)
    out = tmp_path / "submit.out"
    with open(out, "w") as f:  # not a pipe: the local run keeps what it inherits open until it ends
        started = subprocess.run(
            [sys.executable, "-m", "launcher.cli", "submit", *LOCAL, "args.max_train_steps=300", "--name", "loc"],
            stdout=f,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
            cwd=REPO,
            timeout=120,
        )
    assert started.returncode == 0, out.read_text()
    run = "loc/0"
    restart = SweepLayout(Path(env["DANLU_RUNS_DIR"]) / "loc").run(0).attempt(1).restart(0)
    try:
        _wait_for_step(restart.root)
        asked = danlu("stacks", run, "--json", env=env)
        assert asked.returncode == 0, asked.stderr
        stacks = json.loads(asked.stdout)
        assert [s["rank"] for s in stacks] == [0, 1], asked.stdout[-1500:]
        assert all(s["way"].startswith("py-spy") and "train.py" in s["text"] for s in stacks), stacks
        waited = danlu("status", run, "--json", env=env, check=True)
        assert json.loads(waited.stdout)[0]["state"] == "RUNNING"  # asking did not stop it
    finally:
        danlu("cancel", run, env=env)


def test_stacks_refuses_what_it_cannot_read(tmp_path):
    env = private_env(tmp_path)
    unknown = danlu("stacks", "nope/0", env=env)
    assert unknown.returncode == 2 and "no run named 'nope/0'" in unknown.stderr and "hint:" in unknown.stderr
    bad = danlu("stacks", "nope/0", "--timeout", "0", env=env)
    assert bad.returncode == 2 and "--timeout 0" in bad.stderr and "hint:" in bad.stderr, bad.stderr
