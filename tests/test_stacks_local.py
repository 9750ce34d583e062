"""`danlu stacks RUN` on a run of the embedded local cluster: its ranks' stacks while it trains, which it goes on
doing; and the refusals, each one line with a hint and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

from danlu_helpers import danlu, private_env, submit_local, wait_for_log_text

from launcher.layout import SweepLayout

LOCAL = ["experiment=tiny_ibq", "cluster=local", "resources.gpus_per_node=2", "args.sleep_per_step=0.5"]


def test_stacks_of_a_local_run_are_read_while_it_trains(tmp_path):
    env = private_env(tmp_path)
    submit_local(*LOCAL, "args.max_train_steps=300", "--name", "loc", env=env, out=tmp_path / "submit.out")
    run = "loc/0"
    restart = SweepLayout(Path(env["DANLU_RUNS_DIR"]) / "loc").run(0).attempt(1).restart(0)
    try:
        wait_for_log_text(restart.root, "step=1 ", timeout=120)
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
