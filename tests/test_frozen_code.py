"""The code a run trains is the code as it was at submit, on the test cluster.

A researcher submits a held 2-run sweep, keeps editing the program, a module it imports and the config file it
reads, then the jobs start: both runs train the code as submitted. A rerun trains it too; `--code current` trains
the edited code and says so; `danlu diff` shows exactly the edit. The job side is danlu's own frozen copy, the
program writes its relative outputs into the live workdir and reads data beside it as before.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
from danlu_helpers import REPO, danlu, danlu_env, status_json, submit_json, wait_status  # noqa: F401

from launcher.layout import SweepLayout

PROGRAM = """\
import argparse
import os

import helper
from pkg.inner import WORD

parser = argparse.ArgumentParser()
parser.add_argument("--config")
parser.add_argument("--lr", type=float)
args = parser.parse_args()
with open(args.config) as f:
    config = f.read().strip()
with open("../data/value.txt") as f:
    data = f.read().strip()
print(f"MODULE={helper.VERSION} WORD={WORD} CONFIG={config} DATA={data} LR={args.lr}", flush=True)
with open(f"written-{args.lr}.txt", "a") as f:
    f.write("ran\\n")
if os.path.exists(f"../data/fail-{args.lr}"):
    raise SystemExit(3)
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args], cwd=repo, check=True, capture_output=True
    )


def _project(tmp_path: Path) -> Path:
    """A small git project: committed code, one uncommitted edit, data beside it (outside the workdir)."""
    repo = tmp_path / "project"
    (repo / "pkg").mkdir(parents=True)
    (repo / "train.py").write_text(PROGRAM)
    (repo / "helper.py").write_text('VERSION = "v0"\n')
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "inner.py").write_text('WORD = "alpha"\n')
    (repo / "conf.yaml").write_text("c1\n")
    (repo / ".gitignore").write_text("written-*.txt\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    (repo / "helper.py").write_text('VERSION = "v1"\n')  # uncommitted at submit: frozen all the same
    data = tmp_path / "data"
    data.mkdir()
    (data / "value.txt").write_text("d1\n")
    (data / "fail-0.2").write_text("")
    return repo


def _edit(repo: Path) -> None:
    """What the researcher changes while the sweep waits in the queue."""
    (repo / "helper.py").write_text('VERSION = "v2"\n')
    (repo / "conf.yaml").write_text("c2\n")
    (repo / "train.py").write_text(PROGRAM + 'print("EDITED", flush=True)\n')
    (repo / "pkg" / "inner.py").write_text('WORD = "beta"\n')


def _rank0_log(env: Dict[str, str], sweep: str, index: int, attempt: int) -> str:
    restart = SweepLayout(Path(env["DANLU_RUNS_DIR"]) / sweep).run(index).attempt(attempt).restart(0)
    return restart.rank_log(0).read_text(errors="replace")


def _agent_log(env: Dict[str, str], sweep: str, index: int, attempt: int) -> str:
    restart = SweepLayout(Path(env["DANLU_RUNS_DIR"]) / sweep).run(index).attempt(attempt).restart(0)
    return "".join(p.read_text() for p in restart.agent_logs().values())


def _release(items: List[dict]) -> None:
    for job in sorted({str(i["job_id"]).split("_")[0] for i in items}):
        subprocess.run(["scontrol", "release", job], check=True, capture_output=True)


SUBMITTED = "MODULE=v1 WORD=alpha CONFIG=c1 DATA=d1"
EDITED = "MODULE=v2 WORD=beta CONFIG=c2 DATA=d1"


def test_a_held_sweep_trains_the_code_as_submitted_and_a_rerun_too(slurm_cluster, danlu_env, tmp_path):
    repo = _project(tmp_path)
    out = submit_json(
        "-m",
        "cluster=testcluster",
        "launch=python",
        f"workdir={repo}",
        "program=train.py",
        "+args.config=conf.yaml",
        "+args.lr=0.1,0.2",
        "resources.extra_sbatch=[--hold]",  # the jobs wait in the queue until released
        "--name",
        "frozen",
        env=danlu_env,
    )
    assert len(out["runs"]) == 2
    items = status_json("frozen", env=danlu_env)
    assert {i["state"] for i in items} == {"PENDING"}, items
    time.sleep(3)  # held, they stay so
    assert {i["state"] for i in status_json("frozen", env=danlu_env)} == {"PENDING"}
    _edit(repo)
    _release(items)
    items = {i["run"]: i for i in wait_status("frozen", danlu_env, timeout=240)}
    assert items["frozen/0"]["state"] == "COMPLETED" and items["frozen/1"]["state"] == "FAILED", items
    for index, lr in ((0, 0.1), (1, 0.2)):
        log = _rank0_log(danlu_env, "frozen", index, 1)
        assert f"{SUBMITTED} LR={lr}" in log and "EDITED" not in log, log
    # relative outputs land in the live workdir, as without snapshots
    assert (repo / "written-0.1.txt").read_text() == "ran\n"
    # the job side is danlu's copy frozen at submit
    agent = _agent_log(danlu_env, "frozen", 0, 1)
    assert "/.danlu-code/trees/" in agent.split("job side: ", 1)[1].splitlines()[0], agent
    recorded = json.loads(
        (SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / "frozen").run(0).attempt(1).restart(0).environment).read_text()
    )
    assert recorded["packages"].get("submitit") and recorded["python"].startswith("3."), recorded

    # show: the snapshot, its commit, the uncommitted edit it held
    shown = danlu("show", "frozen/0", "--diff", env=danlu_env, check=True).stdout
    assert '-VERSION = "v0"' in shown and '+VERSION = "v1"' in shown, shown
    assert "snapshot " in shown and "1 uncommitted file" in shown, shown

    # a rerun trains the run's own code: the edits stay out
    rerun = danlu("rerun", "frozen/1", env=danlu_env, check=True)
    assert "EDITED" not in rerun.stderr
    _release(status_json("frozen/1", env=danlu_env))  # a rerun is held too: the same config
    wait_status("frozen/1", danlu_env, timeout=240)
    log = _rank0_log(danlu_env, "frozen", 1, 2)
    assert f"{SUBMITTED} LR=0.2" in log and "EDITED" not in log, log

    # --code current: the workdir's code as it is now, said so
    (tmp_path / "data" / "fail-0.2").unlink()
    current = danlu("rerun", "frozen/1", "--code", "current", env=danlu_env, check=True)
    assert "--code current" in current.stderr, current.stderr
    _release(status_json("frozen/1", env=danlu_env))
    items = {i["run"]: i for i in wait_status("frozen/1", danlu_env, timeout=240)}
    assert items["frozen/1"]["state"] == "COMPLETED", items
    log = _rank0_log(danlu_env, "frozen", 1, 3)
    assert f"{EDITED} LR=0.2" in log and "EDITED\n" in log, log

    # diff: the config value that differs, and exactly the edit in the code
    diff = json.loads(danlu("diff", "frozen/0", "frozen/1", "--json", env=danlu_env, check=True).stdout)
    assert diff["config"] == {"args.lr": [0.1, 0.2]}, diff["config"]
    assert diff["code"]["files"] == {
        "conf.yaml": "changed",
        "helper.py": "changed",
        "pkg/inner.py": "changed",
        "train.py": "changed",
    }, diff["code"]
    lines = diff["code"]["diff"]
    changed = sorted(ln for ln in lines if ln[:1] in "+-" and not ln.startswith(("+++", "---")))
    assert changed == sorted(
        [
            '-VERSION = "v1"',
            '+VERSION = "v2"',
            "-c1",
            "+c2",
            '-WORD = "alpha"',
            '+WORD = "beta"',
            '+print("EDITED", flush=True)',
        ]
    ), lines
    report = danlu("report", "frozen", env=danlu_env, check=True).stdout
    assert "frozen/1*" in report, report


def test_unchanged_code_is_frozen_once_for_every_submit(danlu_env, tmp_path):
    """Two submits of unchanged code share one snapshot; a change of one file adds one object and one tree."""
    repo = _project(tmp_path)
    common = ["cluster=local", "launch=python", f"workdir={repo}", "program=train.py", "+args.config=conf.yaml"]
    for i in range(2):
        danlu("submit", *common, f"+args.lr={i}.5", "--name", f"same-{i}", "--wait", env=danlu_env, check=True)
    store = Path(danlu_env["DANLU_RUNS_DIR"]) / ".danlu-code"
    assert len(list((store / "trees").iterdir())) == 1
    objects = {p.name for p in (store / "objects").rglob("*") if p.is_file()}
    (repo / "conf.yaml").write_text("c3\n")
    danlu("submit", *common, "+args.lr=0.7", "--name", "changed", "--wait", env=danlu_env, check=True)
    assert len(list((store / "trees").iterdir())) == 2
    added = {p.name for p in (store / "objects").rglob("*") if p.is_file()} - objects
    assert len(added) == 1, added
    assert os.stat(store).st_mode & 0o077 == 0


EDITABLE_PROGRAM = """\
import mypkg

print(f"FROM={mypkg.__file__} WHO={mypkg.WHO}", flush=True)
"""


def _editable_project(tmp_path: Path, layout: str) -> tuple[Path, Path]:
    """A project installed editable (a PEP 660 wheel built by setuptools) into a venv of its own."""
    project = tmp_path / "editable"
    package = project / ("src/mypkg" if layout == "src" else "mypkg")
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('WHO = "submitted"\n')
    (project / "train.py").write_text(EDITABLE_PROGRAM)
    packages = '[tool.setuptools.packages.find]\nwhere = ["src"]\n' if layout == "src" else ""
    flat = '[tool.setuptools]\npackages = ["mypkg"]\n' if layout == "flat" else ""
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "mypkg"\nversion = "0.1"\n{packages}{flat}'
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    wheels = tmp_path / "wheels"
    build = "import setuptools.build_meta as b, sys; b.build_editable(sys.argv[1])"
    subprocess.run([sys.executable, "-c", build, str(wheels)], cwd=project, check=True, capture_output=True)
    wheel = next(wheels.glob("*.whl"))
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps"]
    subprocess.run([*pip, "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    return project, venv


@pytest.mark.parametrize("layout", ["src", "flat"])
def test_the_frozen_copy_wins_over_an_editable_install_of_the_project(danlu_env, tmp_path, layout):
    """The project installed editable into its env: the run imports the package from its snapshot, not the
    checkout the install points at (a .pth line for a src layout, setuptools' finder for a flat one)."""
    project, venv = _editable_project(tmp_path, layout)
    done = danlu(
        "submit",
        "cluster=local",
        "launch=python",
        "env=venv",
        f"env.path={venv}",
        f"workdir={project}",
        "program=train.py",
        "--name",
        "editable",
        "--wait",
        env=danlu_env,
    )
    assert done.returncode == 0, done.stderr
    log = _rank0_log(danlu_env, "editable", 0, 1)
    found = log.split("FROM=", 1)[1].split()[0]
    assert "/.danlu-code/trees/" in found and found.endswith("mypkg/__init__.py"), log
    assert "WHO=submitted" in log


def test_accelerate_writes_a_relative_output_dir_into_the_live_workdir(danlu_env, tmp_path):
    """The shipped accelerate example, copied to a folder outside git, with a relative --output_dir: the program
    runs from its snapshot and its checkpoints land in the workdir, where the researcher looks for them."""
    work = tmp_path / "dpo"
    work.mkdir()
    shutil.copy(REPO / "examples" / "tiny_dpo" / "train.py", work / "train.py")
    done = danlu(
        "submit",
        "experiment=tiny_dpo",
        "cluster=local",
        f"workdir={work}",
        "args.output_dir=outputs/first",
        "args.max_train_steps=2",
        "args.pretrain_steps=2",
        "args.checkpointing_steps=2",
        "--name",
        "relative",
        "--wait",
        env=danlu_env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert list((work / "outputs" / "first" / "checkpoints").iterdir()), "no checkpoint in the workdir"
    agent = _agent_log(danlu_env, "relative", 0, 1)
    command = agent.split("command: ", 1)[1].splitlines()[0]
    assert re.search(r" \S+/\.danlu-code/trees/\w+/train\.py ", command) and "--output_dir=outputs/first" in command
