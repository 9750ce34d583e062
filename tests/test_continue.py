"""Issue 14: train a finished run further (`danlu rerun RUN --continue OVERRIDES`), and no new run silently takes
another run's output dir (its checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from danlu_helpers import danlu, status_json, wait_status

from launcher.layout import SweepLayout

FIN = ["experiment=tiny_ibq", "cluster=local", "args.max_train_steps=3"]
RUN = "fin/0"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One store with one COMPLETED local run (3 steps), shared by the tests below in order; the last one
    continues it."""
    home = tmp_path_factory.mktemp("continue")
    env = {
        "DANLU_HOME": str(home / "h"),
        "DANLU_RUNS_DIR": str(home / "runs"),
        "DANLU_STORE": str(home / "h" / "store.sqlite"),
        "NO_COLOR": "1",
    }
    done = danlu("submit", *FIN, "--name", "fin", "--wait", env=env)
    assert done.returncode == 0, done.stderr
    return env


def test_continue_needs_a_completed_run_and_something_to_change(env):
    run = RUN
    done = danlu("rerun", run, "--continue", env=env)
    assert done.returncode == 2 and "would end at once" in done.stderr and "hint: " in done.stderr
    done = danlu("rerun", run, "--continue", "--state", "FAILED", "args.max_train_steps=6", env=env)
    assert done.returncode == 2 and "--state does not go with it" in done.stderr
    failed = danlu("submit", *FIN, "args.crash_at_step=2", "--name", "bad", "--wait", env=env)
    assert failed.returncode == 1
    done = danlu("rerun", "bad", "--continue", "args.max_train_steps=6", env=env)
    assert done.returncode == 0 and "nothing to continue in bad: 1 FAILED" in done.stderr
    assert [i["attempt"] for i in status_json("bad", env=env)] == [1]


def test_a_new_run_may_not_take_another_runs_output_dir(env):
    run = RUN
    owned = SweepLayout(Path(env["DANLU_RUNS_DIR"]) / "fin").run(0).output_dir
    for extra in ([], ["--dry-run"]):
        done = danlu("submit", *FIN, f"args.output_dir={owned}", *extra, env=env)
        assert done.returncode == 2, done.stderr
        assert f"belongs to run {run}" in done.stderr and f"danlu rerun {run} --continue" in done.stderr
    done = danlu("submit", *FIN, f"args.output_dir={owned}", "--reuse-output", "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    # one sweep whose runs would all write one dir
    done = danlu("submit", "-m", *FIN, "args.seed=1,2", f"args.output_dir={owned}x", "--dry-run", env=env)
    assert done.returncode == 2 and "runs 0 and 1 of this sweep would write one output dir" in done.stderr
    stored = json.loads(danlu("status", "--all", "--json", env=env).stdout)
    assert [i["run"] for i in stored if i["run"] != "bad/0"] == [run]  # nothing new was recorded


def test_continue_trains_a_completed_run_further_from_its_checkpoint(env):
    run = RUN
    done = danlu("rerun", run, "--continue", "args.max_train_steps=6", "--json", env=env)
    assert done.returncode == 0, done.stderr
    (item,) = wait_status(run, env, timeout=240, poll=1)
    assert item["state"] == "COMPLETED" and item["attempt"] == 2, item
    layout = SweepLayout(Path(env["DANLU_RUNS_DIR"]) / "fin").run(0)
    second = layout.attempt(2).restart(0).log("node0").read_text()
    assert "resumed from checkpoint step=3" in second and "done steps=6" in second, second
    assert "step=1 " not in second  # nothing trained twice
    first = layout.attempt(1).restart(0).log("node0").read_text()
    assert "done steps=3" in first  # the first attempt's logs are kept
