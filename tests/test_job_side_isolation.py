"""danlu's job side runs in the user's workdir: a `launcher` module of the user's own never replaces danlu's.

The batch script `cd`s into the workdir before it starts `python -m launcher.job`, and the user's PYTHONPATH
is in the job's environment. These tests render real scripts, run their commands' interpreters from a workdir
that holds a `launcher.py` and with a PYTHONPATH that holds a `launcher/` package, and check which one loaded.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from danlu_helpers import GOLDEN_ENV, REPO, plan_experiment

import launcher.job
from launcher.plan.render import render_script
from launcher.submit import notify_job

EXPERIMENT = [
    "experiment=tiny_dpo",
    "cluster=testcluster",
    "notify.url=env:DANLU_WEBHOOK",
    "notify.format=slack",
    "notify.email=me@example.org",
]
DANLUS_JOB_PACKAGE = launcher.job.__file__  # where the tests' own interpreter found danlu


@pytest.fixture(autouse=True)
def _fixed_paths(monkeypatch):
    for var, value in GOLDEN_ENV.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(REPO)


@pytest.fixture
def planted(tmp_path) -> Dict[str, str]:
    """A workdir with its own `launcher.py` and a PYTHONPATH with its own `launcher/` package: the env to run in."""
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "launcher.py").write_text('print("PLANTED launcher.py of the workdir")\nraise SystemExit(7)\n')
    src = tmp_path / "src"
    (src / "launcher" / "job").mkdir(parents=True)
    for init in (src / "launcher" / "__init__.py", src / "launcher" / "job" / "__init__.py"):
        init.write_text('print("PLANTED launcher package of PYTHONPATH")\n')
    return {"cwd": str(workdir), "PYTHONPATH": str(src)}


def _env(planted: Dict[str, str]) -> Dict[str, str]:
    return {**os.environ, "PYTHONPATH": planted["PYTHONPATH"]}


def _job_script() -> str:
    (job,) = plan_experiment(EXPERIMENT)
    return str(job.script)


def _summary_script() -> str:
    (job,) = plan_experiment(EXPERIMENT)
    return notify_job.preview(job.spec, "golden", job.sweep_layout, job.runs[0].shape.partition)


def _commands() -> Dict[str, str]:
    """Each command the scripts start danlu's job side with, as the shell sees it."""
    script, summary = _job_script(), _summary_script()
    agent = re.search(r"^\s*(.* -m launcher\.job .*?) \|\| danlu_rc=\$\?$", script, re.M)
    port = re.search(r"\$\(([^()]* -m launcher\.job\.port)\)", script)
    notify = re.search(r'^\s*(.* -m launcher\.job\.notify .*?) "\$danlu_rc" \|\| true$', script, re.M)
    summary_job = re.search(r"^exec (.* -m launcher\.cli notify .*)$", summary, re.M)
    found = {"agent": agent, "port": port, "notify": notify, "summary job": summary_job}
    missing = [name for name, m in found.items() if m is None]
    assert not missing, f"no {', '.join(missing)} command in the rendered scripts"
    return {name: m.group(1) for name, m in found.items() if m is not None}


def _interpreter(command: str) -> List[str]:
    """The command's interpreter with its flags: the words before `-m`."""
    words = shlex.split(command)
    assert words[0] == sys.executable, command
    return words[: words.index("-m")]


@pytest.mark.parametrize("name", ["agent", "port", "notify", "summary job"])
def test_each_job_side_interpreter_imports_danlus_launcher_not_the_workdirs(name, planted):
    interpreter = _interpreter(_commands()[name])
    probe = "import launcher.cli, launcher.job; print(launcher.job.__file__)"
    done = subprocess.run(
        [*interpreter, "-c", probe], cwd=planted["cwd"], env=_env(planted), capture_output=True, text=True
    )
    assert "PLANTED" not in done.stdout + done.stderr, f"{name}: {interpreter}\n{done.stdout}{done.stderr}"
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == DANLUS_JOB_PACKAGE


def _port_section(script: str, port_command: str) -> str:
    """The script's shell options and its rendezvous-port lines (from the port command to the next blank line),
    then a line that prints the port the script went on with."""
    (options,) = re.findall(r"^set -.*$", script, re.M)
    at = script.index(port_command)
    lines = script[script.rindex("\n", 0, at) + 1 : script.index("\n\n", at)]
    return f'{options}\n{lines}\necho "port=[$DANLU_PORT]"\n'


def test_the_rendered_port_command_prints_a_port_from_a_workdir_with_its_own_launcher(planted):
    section = _port_section(_job_script(), _commands()["port"])
    done = subprocess.run(
        ["bash", "-c", section], cwd=planted["cwd"], env=_env(planted), capture_output=True, text=True
    )
    assert "PLANTED" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"port=\[\d+\]\n", done.stdout), done.stdout


def test_a_failing_port_command_stops_the_script_with_a_message(tmp_path):
    (job,) = plan_experiment(EXPERIMENT)
    failing = "sh -c 'echo no port here >&2; exit 3'"
    script = render_script(dataclasses.replace(job.plan, port_command=failing))
    section = _port_section(script, failing)
    done = subprocess.run(["bash", "-c", section], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0, f"the script went on without a port: {done.stdout!r}"
    assert "port=" not in done.stdout
    assert "no port here" in done.stderr  # the command's own words reach the job's log
    assert "danlu:" in done.stderr and "port" in done.stderr.split("danlu:", 1)[1], done.stderr


def test_the_agents_interpreter_leaves_pythonpath_to_the_program_it_starts(planted):
    """The node agent starts the program with its own environment: the program still finds the user's modules."""
    interpreter = _interpreter(_commands()["agent"])
    starts_program = (
        "import os, subprocess, sys, launcher.job; print(launcher.job.__file__); sys.stdout.flush(); "
        "subprocess.run([sys.executable, '-c', 'import launcher; print(launcher.__file__)'], env=dict(os.environ), "
        "cwd=os.path.dirname(os.environ['PYTHONPATH']), check=True)"
    )
    done = subprocess.run(
        [*interpreter, "-c", starts_program], cwd=planted["cwd"], env=_env(planted), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    agent_line, *program_lines = done.stdout.splitlines()
    assert agent_line == DANLUS_JOB_PACKAGE
    assert program_lines == [
        "PLANTED launcher package of PYTHONPATH",
        str(Path(planted["PYTHONPATH"]) / "launcher" / "__init__.py"),
    ]


def test_a_local_run_started_from_a_folder_with_its_own_launcher_runs_danlus_job_side(planted, tmp_path):
    """cluster=local starts the job side in the run's workdir: a `launcher.py` there must not be imported."""
    workdir = Path(planted["cwd"])
    shutil.copytree(REPO / "examples" / "tiny_ibq", workdir, dirs_exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "DANLU_HOME": str(tmp_path / "h"),
        "DANLU_RUNS_DIR": str(tmp_path / "runs"),
        "DANLU_STORE": str(tmp_path / "h" / "store.sqlite"),
        "NO_COLOR": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # danlu's env activated
    }
    danlu = str(Path(sys.executable).parent / "danlu")  # the command a researcher types (its own folder first)
    done = subprocess.run(
        [danlu, "submit", "experiment=tiny_ibq", "cluster=local", f"workdir={workdir}", "args.max_train_steps=2"]
        + ["--name", "iso", "--wait"],
        cwd=planted["cwd"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    status = subprocess.run(
        [danlu, "status", "iso", "--json"], cwd=planted["cwd"], env=env, capture_output=True, text=True, check=True
    )
    assert '"COMPLETED"' in status.stdout, status.stdout
