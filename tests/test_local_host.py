"""A local run is judged, and cancelled, only on the host it runs on.

Two login nodes with one NFS home share the store: the other node neither ends such a run in the store nor
signals a pid of its own. "Another host" here is a real one as far as danlu can tell: its own host name (a UTS
namespace) and its own processes (a PID namespace), with the store and the run dirs shared.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
from danlu_helpers import REPO, danlu, private_env

from launcher.backends.local_jobs import parse_local_job_id
from launcher.layout import SweepLayout
from launcher.procs import descendants, pid_alive, terminate

LONG = ["experiment=tiny_ibq", "cluster=local", "args.max_train_steps=400", "args.sleep_per_step=1"]
OTHER = "other-" + socket.gethostname()[:40]
ALONE = ["unshare", "--uts", "--pid", "--fork", "--mount-proc"]
# the host name set as the kernel takes it: `hostname` refuses some names a host may still have
NAMED = 'printf %s "$0" >/proc/sys/kernel/hostname && exec "$@"'


def _full_env(env: Dict[str, str]) -> Dict[str, str]:
    return {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def on_other_host(*args: str, env: Dict[str, str], host: str = OTHER) -> subprocess.CompletedProcess:
    """`danlu ARGS` run on another host, OTHER unless named."""
    return subprocess.run(
        [*ALONE, "sh", "-c", NAMED, host, sys.executable, "-m", "launcher.cli", *args],
        capture_output=True,
        text=True,
        env=_full_env(env),
        cwd=REPO,
        timeout=300,
    )


def item_of(done: subprocess.CompletedProcess, run: str) -> dict:
    assert done.returncode == 0, done.stderr
    (item,) = [i for i in json.loads(done.stdout) if i["run"] == run]
    return item


def processes(job_id: str, env: Dict[str, str], run: str) -> List[int]:
    """The local run's process and every one under it, once its agent started and has recorded the job environment
    (a short-lived interpreter it starts beside the program: not one of the run's lasting processes)."""
    local = parse_local_job_id(job_id)
    assert local is not None, job_id
    sweep, index = run.split("/")
    recorded = SweepLayout(Path(env["DANLU_RUNS_DIR"]) / sweep).run(int(index)).attempt(1).restart(0).environment
    deadline = time.time() + 90
    # the shell, submitit's controller, the agent
    while (len(descendants(local.pid)) < 3 or not recorded.exists()) and time.time() < deadline:
        time.sleep(0.5)
    return [local.pid, *descendants(local.pid)]


def ended(procs: List[int], timeout: float = 60) -> bool:
    deadline = time.time() + timeout
    while any(map(pid_alive, procs)) and time.time() < deadline:
        time.sleep(0.5)
    return not any(map(pid_alive, procs))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One store with two long local runs, long/0 and long/1, running on this host; the tests below use them in
    order."""
    if subprocess.run([*ALONE, "sh", "-c", NAMED, OTHER, "true"], capture_output=True).returncode != 0:
        why = "no UTS and PID namespaces here (unshare needs root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why, pytrace=False)  # in CI a test that cannot make its second host fails
        pytest.skip(why)
    home = tmp_path_factory.mktemp("localhost")
    env = private_env(home)
    with open(home / "out", "w") as out:  # not a pipe: the local runs keep what they inherit open until they end
        started = subprocess.run(
            [sys.executable, "-m", "launcher.cli", "submit", "-m", *LONG, "args.seed=1,2", "--name", "long"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_full_env(env),
            cwd=REPO,
            timeout=180,
        )
    assert started.returncode == 0, (home / "out").read_text()
    started_here = [parse_local_job_id(job_of(env, run)) for run in ("long/0", "long/1")]
    yield env
    for local in started_here:  # whatever the tests left running
        if local is not None and pid_alive(local.pid):
            terminate(local.pid, signal.SIGTERM)


def job_of(env: Dict[str, str], run: str) -> str:
    store = sqlite3.connect(env["DANLU_STORE"])
    try:
        (job_id,) = store.execute("SELECT job_id FROM attempts WHERE run=? ORDER BY attempt DESC", (run,)).fetchone()
    finally:
        store.close()
    return str(job_id)


def test_a_local_job_id_names_the_host_it_runs_on(env):
    local = parse_local_job_id(job_of(env, "long/0"))
    assert local is not None and local.host == socket.gethostname() and local.here


def test_another_host_leaves_the_run_running_and_names_its_host(env):
    procs = processes(job_of(env, "long/0"), env, "long/0")
    item = item_of(on_other_host("status", "--all", "--json", env=env), "long/0")
    assert not item["final"] and item["state"] not in ("FAILED", "CANCELLED", "COMPLETED"), item
    assert f"a local run on host {socket.gethostname()}: ask there" in item["reason"], item
    assert all(map(pid_alive, procs))
    item = item_of(danlu("status", "--all", "--json", env=env), "long/0")
    assert item["state"] == "RUNNING" and not item["final"] and item["reason"] == "", item


def test_another_host_refuses_to_cancel_it_and_kills_nothing(env):
    procs = processes(job_of(env, "long/0"), env, "long/0")
    for target in ("long/0", "long"):
        done = on_other_host("cancel", target, env=env)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.splitlines()
        assert lines[0].startswith("error: ") and socket.gethostname() in lines[0], done.stderr
        assert lines[1].startswith("hint: ") and len(lines) == 2, done.stderr
    assert all(map(pid_alive, procs)), "a cancel on another host ended the run"
    for run in ("long/0", "long/1"):
        item = item_of(danlu("status", "--all", "--json", env=env), run)
        assert item["state"] == "RUNNING" and not item["final"], item


def test_another_host_does_not_rerun_it(env):
    done = on_other_host("rerun", "long", "--state", "FAILED,CANCELLED", env=env)
    assert done.returncode == 0 and "nothing to rerun in long" in done.stderr, done.stderr
    attempts = [i["attempt"] for i in json.loads(danlu("status", "--all", "--json", env=env).stdout)]
    assert attempts == [1, 1]


def test_this_host_cancels_it(env):
    job_id = job_of(env, "long/0")
    procs = processes(job_id, env, "long/0")
    done = danlu("cancel", "long/0", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"run": "long/0", "job_id": job_id, "state": "CANCELLED"}]
    assert ended(procs), "the cancelled local run's processes live on"


def test_a_job_id_without_a_host_is_judged_and_cancelled_here(env):
    procs = processes(job_of(env, "long/1"), env, "long/1")
    old = f"local-{procs[0]}"
    store = sqlite3.connect(env["DANLU_STORE"])
    with store:
        store.execute("UPDATE attempts SET job_id=? WHERE run='long/1'", (old,))
    store.close()
    assert parse_local_job_id(old) == (None, procs[0])
    item = item_of(danlu("status", "--all", "--json", env=env), "long/1")
    assert item["state"] == "RUNNING" and not item["final"] and item["reason"] == "", item
    done = danlu("cancel", "long/1", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"run": "long/1", "job_id": old, "state": "CANCELLED"}]
    assert ended(procs), "the cancelled local run's processes live on"


def test_local_job_ids_parse_and_refuse_what_is_not_one():
    assert parse_local_job_id("local-login1.cluster-2-1234") == ("login1.cluster-2", 1234)
    assert parse_local_job_id("local-77") == (None, 77)
    for other in ("123", "123_4", "local-", "local-host-", "local-ho_st-12", "local-host-0", None):
        assert parse_local_job_id(other) is None, other


def test_a_host_whose_name_no_job_id_can_hold_starts_no_local_run(env):
    done = on_other_host("submit", *LONG, "--name", "odd", env=env, host="login_2")
    assert done.returncode == 1 and "'login_2' has characters a local job id cannot hold" in done.stderr, done.stderr
    assert "hint: nothing was queued or recorded" in done.stderr
    assert "odd/0" not in {i["run"] for i in json.loads(danlu("status", "--all", "--json", env=env).stdout)}
