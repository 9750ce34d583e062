"""The job environment a start ran in: task 0's record of the environment's Python, packages, uv lock file and GPU
driver, the node agent writing it once per start beside the program, and how `danlu show` tells it. No Slurm."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List

import pytest
from danlu_helpers import REPO

from launcher.job import environment
from launcher.job.agent import Start, environment_recorder
from launcher.job.environment import Recorder, environment_record, interpreter, record_environment
from launcher.job.node_env import TaskIds
from launcher.layout import RunLayout
from launcher.views.environment import environment_lines, package_changes

PYTHON = sys.executable  # the venv danlu runs in
KEYS = {"python", "executable", "packages", "editable", "uv_lock", "gpu", "host", "recorded", "error"}
NVRM = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:59 UTC 2024\nGCC version: 12\n"
NVRM_OPEN = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  555.42.02  Release Build  (dvs-builder@U16)\n"
needs_python = pytest.mark.skipif(not Path(PYTHON).exists(), reason=f"{PYTHON} is the environment recorded")


def read(path: Path) -> Dict[str, Any]:
    data: Dict[str, Any] = json.loads(path.read_text())
    return data


def fake_program(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def venv_in(project: Path) -> Path:
    """A bare environment at <project>/.venv (a uv project's place for it); its python."""
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(project / ".venv")], check=True, timeout=120)
    return project / ".venv" / "bin" / "python"


# ---- the record --------------------------------------------------------------------------------------------------
@needs_python
def test_the_record_lists_the_environments_own_packages_and_python(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "elsewhere"))  # -I: never the job's import path
    target = tmp_path / "environment.json"
    record_environment(PYTHON, str(tmp_path), target)
    env = read(target)
    assert "error" not in env, env
    assert env["python"] == sys.version.split()[0]
    assert env["executable"] == PYTHON
    for name in ("submitit", "omegaconf"):
        assert env["packages"][name] == metadata.version(name)
    assert set(env["editable"]) <= set(env["packages"])
    assert all(Path(where).is_absolute() for where in env["editable"].values()), env["editable"]
    assert isinstance(env["host"], str) and abs(env["recorded"] - time.time()) < 120
    assert set(env) <= KEYS
    assert not list(tmp_path.glob(".environment.json.*"))  # the temporary file was renamed


@needs_python
def test_the_lock_beside_the_environment_comes_before_the_workdirs(tmp_path):
    python = venv_in(tmp_path / "project")
    work = tmp_path / "work"
    work.mkdir()
    assert environment_record(str(python), str(work))["uv_lock"] is None
    (work / "uv.lock").write_text("version = 1 # workdir\n")
    found = environment_record(str(python), str(work))["uv_lock"]
    assert found == {"path": str(work / "uv.lock"), "sha256": hashlib.sha256(b"version = 1 # workdir\n").hexdigest()}
    beside = tmp_path / "project" / "uv.lock"
    beside.write_bytes(b"version = 1 # project\n")
    found = environment_record(str(python), str(work))["uv_lock"]
    assert found == {"path": str(beside), "sha256": hashlib.sha256(beside.read_bytes()).hexdigest()}


@pytest.mark.parametrize(
    "body, words",
    [
        (None, "cannot run"),
        ("exit 3", "exited 3"),
        ("echo not json", "printed no JSON record"),
        ('echo \'{"python": "3.11.9"}\'', "without packages"),
    ],
)
def test_an_interpreter_that_gives_no_record_gives_an_error_and_what_is_known(tmp_path, body, words):
    python = str(tmp_path / "missing" / "python") if body is None else fake_program(tmp_path / "python", body)
    (tmp_path / "uv.lock").write_text("lock\n")
    target = tmp_path / "environment.json"
    record_environment(python, str(tmp_path), target)  # never raises
    env = read(target)
    assert words in env["error"] and "\n" not in env["error"], env
    assert env["uv_lock"]["path"] == str(tmp_path / "uv.lock") and env["host"] and env["recorded"]
    assert "packages" not in env and set(env) <= KEYS


def test_an_interpreter_that_hangs_is_given_up(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "ASK_TIMEOUT_S", 0.5)
    began = time.monotonic()
    env = environment_record(fake_program(tmp_path / "python", "exec sleep 30"), str(tmp_path))
    assert time.monotonic() - began < 10
    assert "did not list its packages within" in env["error"]


def test_a_record_that_cannot_be_written_is_not_an_exception(tmp_path):
    record_environment(sys.executable, str(tmp_path), tmp_path / "gone" / "environment.json")
    assert not (tmp_path / "gone").exists()


@needs_python
def test_no_environment_variable_is_written(tmp_path, monkeypatch):
    secret = "hf_SECRET_never_in_the_record_4242"
    monkeypatch.setenv("HF_TOKEN", secret)
    target = tmp_path / "environment.json"
    record_environment(PYTHON, str(tmp_path), target)
    assert secret not in target.read_text() and "HF_TOKEN" not in target.read_text()


@pytest.mark.parametrize("line, driver", [(NVRM, "550.54.15"), (NVRM_OPEN, "555.42.02"), ("", None)])
def test_the_gpu_driver_and_cuda_versions(tmp_path, monkeypatch, line, driver):
    version = tmp_path / "version"
    version.write_text(line)
    monkeypatch.setattr(environment, "NVIDIA_VERSION", version)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    assert environment.gpu() == {"driver": driver, "cuda": None}  # no nvidia-smi on PATH
    fake_program(
        bin_dir / "nvidia-smi", "echo '| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |'"
    )
    assert environment.gpu() == {"driver": driver, "cuda": "12.4"}
    monkeypatch.setattr(environment, "NVIDIA_VERSION", tmp_path / "no-driver")
    assert environment.gpu() is None


def test_the_interpreter_is_the_commands_python_else_the_jobs(tmp_path):
    bin_dir = tmp_path / "env" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "python3.11", "accelerate"):
        fake_program(bin_dir / name, "exit 0")
    path = f"{bin_dir}:/usr/bin"
    assert interpreter(["python3.11", "train.py"], path) == str(bin_dir / "python3.11")
    assert interpreter(["/opt/py/bin/python3", "train.py"], path) == "/opt/py/bin/python3"  # as given, even if gone
    assert interpreter(["accelerate", "launch", "train.py"], path) == str(bin_dir / "python")
    assert interpreter(["torchrun", "train.py"], str(tmp_path / "nothing")) == "python"


# ---- the node agent ----------------------------------------------------------------------------------------------
def test_only_task_zero_records_and_into_its_start(tmp_path):
    run = RunLayout(tmp_path / "run")
    files = run.attempt(2)

    def start(rank: int) -> Start:
        return Start(TaskIds(rank, 2, rank, 0, 2), 2, 1, run, files, files.restart(1), f"node{rank}")

    said: List[str] = []
    recorder = environment_recorder(start(0), [sys.executable, "train.py"], {"PATH": ""}, said.append)
    assert recorder is not None and environment_recorder(start(1), ["python"], {}, said.append) is None
    files.restart(1).root.mkdir(parents=True)
    recorder.start()
    recorder.wait()
    assert read(files.restart(1).environment)["executable"]
    assert files.read_environment() == read(files.restart(1).environment)
    (line,) = said
    assert line.startswith(f"environment ({sys.executable}) in ") and "packages (environment.json)" in line


def test_waiting_for_a_slow_record_is_bounded_and_said(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "HURRIED_JOIN_S", 0.3)
    release = threading.Event()
    monkeypatch.setattr(environment, "environment_record", lambda python, workdir: release.wait(10) and {})
    said: List[str] = []
    recorder = Recorder("python", str(tmp_path), tmp_path / "environment.json", said.append)
    recorder.start()
    began = time.monotonic()
    recorder.wait(hurry=True)
    assert time.monotonic() - began < 5
    assert said == ["environment still being recorded after 0s: the start ends without it"]
    release.set()


def agent_env(tmp_path: Path, rank: int, ntasks: int, command: str) -> Dict[str, str]:
    """What submitit's local executor and danlu's script give a task of a one-node job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}
    env.update(
        PYTHONPATH=str(REPO),
        SUBMITIT_EXECUTOR="local",
        SUBMITIT_LOCAL_JOB_ID="4242",
        SUBMITIT_LOCAL_NTASKS=str(ntasks),
        SUBMITIT_LOCAL_JOB_NUM_NODES="1",
        SUBMITIT_LOCAL_NODEID="0",
        SUBMITIT_LOCAL_GLOBALID=str(rank),
        SUBMITIT_LOCAL_LOCALID=str(rank),
        DANLU_RUN_ID="t/0",
        DANLU_RUN_DIR=str(tmp_path / "run"),
        DANLU_WORKDIR=str(tmp_path),
        DANLU_COMMAND=command,
        DANLU_PORT="29999",
    )
    return env


AGENT = (
    "from launcher.node_agent import NodeAgent; "
    "NodeAgent(run_id='t/0', launch_kind='python', procs_per_node=1, tasks_per_node={n}, max_requeues=0, "
    "grace_s=0.0)()"
)


def test_a_short_program_still_gets_its_record_before_the_result(tmp_path):
    """The program ends at once; the agent kills whatever it started that is left: never the record."""
    (tmp_path / "uv.lock").write_text("lock\n")
    env = agent_env(tmp_path, 0, 1, f"{sys.executable} -c 'print(7)'")
    done = subprocess.run(
        [sys.executable, "-c", AGENT.format(n=1)], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    attempt = RunLayout(tmp_path / "run").attempt(1)
    recorded = attempt.read_environment()
    assert recorded is not None and "error" not in recorded, recorded
    assert recorded["python"] == sys.version.split()[0] and recorded["packages"]["submitit"]
    assert recorded["uv_lock"]["path"] == str(tmp_path / "uv.lock")
    result = attempt.read_result()
    assert result is not None and result["exit_code"] == 0
    assert attempt.restart(0).environment.stat().st_mtime <= attempt.result.stat().st_mtime, (
        "recorded before the result"
    )
    log = attempt.restart(0).agent_log("rank0").read_text()
    assert f"environment ({sys.executable}) in " in log, log


def test_a_task_other_than_zero_records_nothing(tmp_path):
    env = agent_env(tmp_path, 1, 2, f"{sys.executable} -c 'print(7)'")
    done = subprocess.run(
        [sys.executable, "-c", AGENT.format(n=2)], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    restart = RunLayout(tmp_path / "run").attempt(1).restart(0)
    assert restart.agent_log("rank1").exists() and not restart.environment.exists()


# ---- what `danlu show` says --------------------------------------------------------------------------------------
RECORD: Dict[str, Any] = {
    "python": "3.11.9",
    "executable": "/p/.venv/bin/python",
    "packages": {"torch": "2.3.0", "PyYAML": "6.0.1", "numpy": "1.26.4", "mylib": "0.1"},
    "editable": {"mylib": "/p/src"},
    "uv_lock": {"path": "/p/uv.lock", "sha256": "1a2b3c4d5e6f" + "0" * 52},
    "gpu": {"driver": "550.54.15", "cuda": "12.4"},
    "host": "node1",
    "recorded": 1.0,
}


def test_show_tells_the_environment_in_one_line_and_where():
    assert environment_lines(RECORD) == [
        "environment  Python 3.11.9 · 4 packages (1 editable) · uv.lock 1a2b3c4d5e6f · GPU driver 550.54.15 CUDA 12.4",
        "             /p/.venv/bin/python on node1",
    ]
    bare = dict(RECORD, uv_lock=None, gpu=None, editable={})
    assert environment_lines(bare)[0] == "environment  Python 3.11.9 · 4 packages · no uv.lock · no GPU driver"
    assert environment_lines(dict(RECORD, gpu={"driver": "550.54.15", "cuda": None}))[0].endswith("driver 550.54.15")
    assert environment_lines(None) == ["environment  not recorded yet"]
    failed = {"error": "cannot run python: No such file", "uv_lock": None, "gpu": None, "host": "n", "recorded": 1.0}
    assert environment_lines(failed) == [
        "environment  recorded in part (cannot run python: No such file) · no uv.lock · no GPU driver",
        "             n",
    ]


def test_package_changes_name_each_difference_sorted():
    after = dict(
        RECORD,
        python="3.11.10",
        packages={"torch": "2.4.0", "pyyaml": "6.0.1", "mylib": "0.1", "accelerate": "1.0.0"},
        uv_lock={"path": "/p/uv.lock", "sha256": "f" * 64},
    )
    assert package_changes(RECORD, after) == [
        ("accelerate", None, "1.0.0"),
        ("numpy", "1.26.4", None),
        ("python", "3.11.9", "3.11.10"),
        ("torch", "2.3.0", "2.4.0"),
        ("uv.lock", RECORD["uv_lock"]["sha256"], "f" * 64),
    ]
    assert package_changes(RECORD, RECORD) == []
    assert ("uv.lock", RECORD["uv_lock"]["sha256"], None) in package_changes(RECORD, dict(RECORD, uv_lock=None))
