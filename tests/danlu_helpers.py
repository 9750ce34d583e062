"""Helpers shared by danlu's tests: run the CLI, render experiments deterministically."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent


def danlu(
    *args: str,
    env: Optional[Dict[str, str]] = None,
    check: bool = False,
    timeout: float = 300,
    cwd: Optional[Path] = None,
) -> subprocess.CompletedProcess:
    """Run `danlu ARGS` as a user would (a fresh process), returning the completed process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    # the job inherits this PATH (sbatch --export=ALL): the venv's accelerate/python come first
    full_env["PATH"] = f"{Path(sys.executable).parent}:{full_env.get('PATH', '')}"
    done = subprocess.run(
        [sys.executable, "-m", "launcher.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=str(cwd or REPO),
    )
    if check and done.returncode != 0:
        raise AssertionError(f"danlu {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def submit_json(*args: str, env: Optional[Dict[str, str]] = None) -> dict:
    done = danlu("submit", *args, "--json", env=env, check=True)
    return json.loads(done.stdout)


def status_json(*names: str, env: Optional[Dict[str, str]] = None) -> List[dict]:
    done = danlu("status", "--all", "--json", *names, env=env, check=True)
    return json.loads(done.stdout)


GOLDEN_ENV = {
    "DANLU_RUNS_DIR": "/runs",
    "DIFFUSIONDPO_DIR": "/code/DiffusionDPO",
    "IBQ_DIR": "/code/SEED-Voken",
    "TAMING_DIR": "/code/taming-transformers",
}


@contextlib.contextmanager
def fixed_golden_environment() -> Iterator[None]:
    """The machine-independent environment golden scripts are rendered in (fixed dirs, run from the repo)."""
    saved = {k: os.environ.get(k) for k in GOLDEN_ENV}
    cwd = os.getcwd()
    os.environ.update(GOLDEN_ENV)
    os.chdir(REPO)
    try:
        yield
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def plan_experiment(overrides: Sequence[str], sweep: str = "golden", multirun: bool = False) -> list:
    """The jobs `danlu submit --dry-run` would print, made by danlu's own planner with a fixed token."""
    from launcher.plan.planner import new_runs, plan_jobs
    from launcher.spec.compose import Composer
    from launcher.spec.validate import check

    cfgs = Composer().runs(list(overrides), multirun)
    shapes = check([c.spec for c in cfgs]).shapes  # golden scripts of experiments whose checkouts are elsewhere
    return plan_jobs("0123456789ab", new_runs(sweep, cfgs, shapes))


def render_experiment(overrides: Sequence[str], sweep: str = "golden", multirun: bool = False) -> List[str]:
    """The scripts of `plan_experiment`, with machine paths made machine-independent; with notify.*, the first
    is followed by the sweep's summary job, as `danlu submit --dry-run` prints them."""
    from launcher.submit import notify_job

    jobs = plan_experiment(overrides, sweep, multirun)
    scripts = [j.script for j in jobs]
    if jobs and notify_job.wanted(jobs[0].spec):
        scripts[0] += "# ==== the summary job ====\n" + notify_job.preview(
            jobs[0].spec, sweep, jobs[0].sweep_layout, jobs[0].runs[0].shape.partition
        )
    return [s.replace(sys.executable, "<python>").replace(str(REPO), "<repo>") for s in scripts]


import pytest  # noqa: E402


def private_env(root: Path) -> Dict[str, str]:
    """A private store and runs dir under `root`; pass as env= to `danlu(...)`.

    Runs dirs live under the test's tmp dir, which the test cluster's nodes share (same machine)."""
    home = root / "danlu-home"
    return {
        "DANLU_HOME": str(home),
        "DANLU_RUNS_DIR": str(root / "runs"),
        "DANLU_STORE": str(home / "store.sqlite"),
        "NO_COLOR": "1",
    }


@pytest.fixture
def danlu_env(tmp_path: Path) -> Dict[str, str]:
    """A private store and runs dir for one test (private_env)."""
    return private_env(tmp_path)


def _slurm_jobs(sweep_or_run: str, env: Dict[str, str]) -> Optional[List[str]]:
    """The Slurm job ids (squeue's spelling, `12` or `12_3`) of the latest attempt of every run of a sweep or of
    one run, read from the test's own store; None when some run has no Slurm job id (yet, or a local run)."""
    import sqlite3

    store = env.get("DANLU_STORE")
    if not store or not Path(store).exists():
        return None
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
        try:
            rows = db.execute(
                "SELECT a.job_id FROM attempts a JOIN runs r ON r.run = a.run WHERE (r.sweep = ? OR r.run = ?) "
                "AND a.attempt = (SELECT MAX(b.attempt) FROM attempts b WHERE b.run = a.run)",
                (sweep_or_run, sweep_or_run),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    ids = [r[0] for r in rows]
    if not ids or any(not i or not i[0].isdigit() for i in ids):
        return None
    return ids


def wait_status(
    sweep_or_run: str, env: Dict[str, str], timeout: float = 180, poll: float = 3.0, done=None, started: bool = False
) -> List[dict]:
    """Poll `danlu status --json` until `done(items)` (by default: every state final, launcher/state/machine.py;
    with started=True: no run PENDING); returns the items (AssertionError on timeout).

    Without `done`: while the runs' Slurm jobs are still queued (or still pending, started=True), as one cheap
    `squeue` call says, danlu is not asked: the suite's CPU went mostly to status polls' interpreter start-ups."""
    import time

    from slurm_helpers import queue_states

    gate = done is None  # a predicate of the caller's own: no squeue can stand in for it
    if done is None:
        done = (
            (lambda items: all(i["state"] != "PENDING" for i in items))
            if started
            else (lambda items: all(i["final"] for i in items))
        )
    end = time.time() + timeout
    items: List[dict] = []
    while time.time() < end:
        ids = _slurm_jobs(sweep_or_run, env) if gate else None
        states = (
            queue_states(ids, dict(os.environ, PATH=env.get("PATH") or os.environ.get("PATH", ""))) if ids else None
        )
        if states and (not started or "PENDING" in states):
            time.sleep(poll)
            continue
        items = status_json(sweep_or_run, env=env)
        if items and done(items):
            return items
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {sweep_or_run}: {items}")


def danlu_inprocess(argv: Sequence[str], env: Dict[str, str], monkeypatch, capsys) -> subprocess.CompletedProcess:
    """`danlu ARGV` in this process (fast: no interpreter start, Hydra imported once)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{env.get('PATH', os.environ.get('PATH', ''))}")
    monkeypatch.chdir(REPO)
    from launcher.cli import main

    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(argv), code, out.out, out.err)


def local_run_row(sweep_dir: Path, sweep: str, index: int, workdir: Path, config: dict, **fields: object):
    """The store row of run `index` of a sweep of finished local runs, written by a test as `danlu submit` would
    (launcher.store.NewRun); `fields` set what a test needs besides (overrides, command, code)."""
    from launcher.store import NewRun

    values: dict = dict(
        run=f"{sweep}/{index}",
        idx=index,
        overrides=[],
        config=config,
        run_dir=str(sweep_dir / str(index)),
        workdir=str(workdir),
        git_commit=None,
        git_dirty=None,
        partition="local",
        nodes=1,
        cluster_kind="local",
        script=str(sweep_dir / str(index) / "job.sh"),
        command="python train.py",
        tag="t:0",
    )
    values.update(fields)
    return NewRun(**values)


def submit_local(*args: str, env: Dict[str, str], out: Path) -> None:
    """`danlu submit ARGS` of a local run, its output into the file `out`: not a pipe, which the local run would keep
    open (and a reader waiting) until it ends."""
    with open(out, "w") as f:
        started = subprocess.run(
            [sys.executable, "-m", "launcher.cli", "submit", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
            cwd=REPO,
            timeout=120,
        )
    assert started.returncode == 0, out.read_text()


def wait_for_log_text(folder: Path, text: str, timeout: float) -> None:
    """Until a `*.log` of `folder` (a restart's: its node and rank logs) holds `text`."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        logs = list(folder.glob("*.log")) if folder.is_dir() else []
        if any(text in p.read_text(errors="replace") for p in logs):
            return
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} in the logs of {folder} within {timeout}s")
