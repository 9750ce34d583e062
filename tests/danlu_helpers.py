"""Helpers shared by danlu's tests: run the CLI, render experiments deterministically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent


def danlu(*args: str, env: Optional[Dict[str, str]] = None, check: bool = False, timeout: float = 300,
          cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run `danlu ARGS` as a user would (a fresh process), returning the completed process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    # the job inherits this PATH (sbatch --export=ALL): the venv's accelerate/python come first
    full_env["PATH"] = f"{Path(sys.executable).parent}:{full_env.get('PATH', '')}"
    done = subprocess.run([sys.executable, "-m", "launcher.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=str(cwd or REPO))
    if check and done.returncode != 0:
        raise AssertionError(f"danlu {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def submit_json(*args: str, env: Optional[Dict[str, str]] = None) -> dict:
    done = danlu("submit", *args, "--json", env=env, check=True)
    return json.loads(done.stdout)


def status_json(*names: str, env: Optional[Dict[str, str]] = None) -> List[dict]:
    done = danlu("status", "--all", "--json", *names, env=env, check=True)
    return json.loads(done.stdout)


def render_experiment(overrides: Sequence[str], sweep: str = "golden", multirun: bool = False) -> List[str]:
    """Compose and render like `danlu submit --dry-run`, with a fixed token; paths made machine-independent."""
    from launcher.config import Composer
    from launcher.submit import PlannedRun, check, plan_jobs, sweep_dir

    cfgs = Composer().runs(list(overrides), multirun)
    shapes, _ = check(cfgs, strict_files=False)
    planned = []
    for i, (cfg, shp) in enumerate(zip(cfgs, shapes)):
        sdir = sweep_dir(cfg.spec, sweep)
        planned.append(PlannedRun(run_id=f"{sweep}/{i}", idx=i, cfg=cfg, shape=shp, run_dir=str(sdir / str(i)),
                                  workdir=str(Path(cfg.spec.workdir).expanduser())))
    jobs = plan_jobs(sweep, "0123456789ab", planned)
    return [j.script.replace(sys.executable, "<python>").replace(str(REPO), "<repo>") for j in jobs]


import pytest  # noqa: E402


@pytest.fixture
def danlu_env(tmp_path: Path) -> Dict[str, str]:
    """A private store and runs dir for one test; pass as env= to `danlu(...)`.

    Runs dirs live under the test's tmp dir, which the test cluster's nodes share (same machine)."""
    home = tmp_path / "danlu-home"
    runs = tmp_path / "runs"
    env = {"DANLU_HOME": str(home), "DANLU_RUNS_DIR": str(runs), "DANLU_STORE": str(home / "store.sqlite"),
           "NO_COLOR": "1"}
    return env


def wait_status(sweep_or_run: str, env: Dict[str, str], timeout: float = 180, poll: float = 2.0,
                done=lambda items: all(i["state"] not in ("PENDING", "RUNNING", "SUBMITTING", "REQUEUED",
                                                             "CONFIGURING", "COMPLETING") for i in items)) -> List[dict]:
    """Poll `danlu status --json` until `done(items)`; returns the items (AssertionError on timeout)."""
    import time

    end = time.time() + timeout
    items: List[dict] = []
    while time.time() < end:
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
