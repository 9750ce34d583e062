"""The job side runs only the node agent that was submitted, and only with a danlu of the submitter's job protocol.

The batch script carries the SHA-256 of each pickled node agent and the submitting danlu's version and job
protocol; Slurm keeps its own copy of the script from sbatch on. These tests pickle real agents of a real plan,
take what the rendered script exports, and run `python -I -m launcher.job` as srun does inside a job: a pickle
that is not the one submitted, or a job of another protocol, is refused before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import pytest
from danlu_helpers import GOLDEN_ENV, REPO, plan_experiment

import launcher
from launcher.backends import submitit_jobs as backend
from launcher.layout import SweepLayout
from launcher.state.reasons import classify

TINY = ["experiment=tiny_dpo", "cluster=testcluster"]


@pytest.fixture(autouse=True)
def _fixed_paths(monkeypatch):
    for var, value in GOLDEN_ENV.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(REPO)


class Planted:
    """Unpickling it creates a file: the proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _submitted(overrides: Sequence[str], root: Path, multirun: bool = False):
    """The job's pickles written into `root` as a submit writes them, and its script as sbatch would get it."""
    from launcher.plan.render import with_agent_hashes

    (job,) = plan_experiment(overrides, multirun=multirun)
    sweep = SweepLayout(root / "sweep")
    sweep.submitit_dir.mkdir(parents=True)
    hashes = backend.pickle_agents(
        [r.agent() for r in job.runs],
        [sweep.pickle(job.tag, i) for i in range(len(job.runs))],
        15,
        shared=sweep.job_pickle(job.tag) if job.is_array else None,
    )
    return job, sweep, with_agent_hashes(job.script, hashes)


CHECKED = ("DANLU_AGENT_SHA256", "DANLU_JOB_PROTOCOL", "DANLU_VERSION")


def _exports(script: str, task: int = 0) -> Dict[str, str]:
    """What the script exports for the job side to check, as array task `task` sees it (its `case` arm's and the
    job's)."""
    out: Dict[str, str] = {}
    arm = None
    for line in script.splitlines():
        m = re.match(r"^  (\d+)\)$", line)
        if m:
            arm = int(m.group(1))
        elif line.strip() == ";;":
            arm = None
        if arm not in (None, task) or not line.strip().startswith("export DANLU_"):
            continue
        for word in shlex.split(line.strip(), comments=True)[1:]:
            name, _, value = word.partition("=")
            if name in CHECKED:
                out[name] = value
    return out


def _job_env(exports: Dict[str, str], task: int = 0, array: bool = False) -> Dict[str, str]:
    """What a task of Slurm job 15 (array job 12 when `array`) sees: Slurm's variables and the script's exports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DANLU_", "SUBMITIT_"))}
    env.update(
        SUBMITIT_EXECUTOR="slurm",
        SLURM_JOB_ID="15",
        SLURM_PROCID="0",
        SLURM_NTASKS="1",
        SLURM_LOCALID="0",
        SLURM_NODEID="0",
        SLURM_JOB_NUM_NODES="1",
        SLURM_JOB_NODELIST="node1",
    )
    if array:
        env.update(SLURM_ARRAY_JOB_ID="12", SLURM_ARRAY_TASK_ID=str(task))
    env.update(exports)
    return env


def _job_side(sweep: SweepLayout, tag: str, env: Dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -I -u -m launcher.job <submitit folder> <stem>`, as srun starts it on a node."""
    return subprocess.run(
        [sys.executable, "-I", "-u", "-m", "launcher.job", str(sweep.submitit_folder()), str(sweep.pickle_stem(tag))],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _reason(stderr: str) -> str:
    lines: List[str] = stderr.splitlines()
    return classify("FAILED", "1:0", "node1", lines) or ""


def test_the_script_exports_the_hash_of_the_pickle_and_the_job_protocol(tmp_path):
    from launcher.job.protocol import JOB_PROTOCOL

    job, sweep, script = _submitted(TINY, tmp_path)
    exports = _exports(script)
    written = sweep.pickle(job.tag, 0).read_bytes()
    assert exports["DANLU_AGENT_SHA256"] == hashlib.sha256(written).hexdigest()
    assert exports["DANLU_JOB_PROTOCOL"] == str(JOB_PROTOCOL)
    assert exports["DANLU_VERSION"] == launcher.__version__
    assert script.count("DANLU_AGENT_SHA256=") == 1


def test_the_dry_run_script_shows_a_placeholder_for_the_hash():
    (job,) = plan_experiment(TINY)
    assert _exports(job.script)["DANLU_AGENT_SHA256"] == "@AGENT_SHA256@"


def test_an_array_of_alike_agents_carries_one_hash_for_its_shared_pickle(tmp_path):
    job, sweep, script = _submitted([*TINY, "args.seed=1,2,3"], tmp_path, multirun=True)
    assert job.is_array and len(job.runs) == 3
    assert script.count("DANLU_AGENT_SHA256=") == 1
    shared = hashlib.sha256(sweep.job_pickle(job.tag).read_bytes()).hexdigest()
    assert all(_exports(script, task)["DANLU_AGENT_SHA256"] == shared for task in range(3))


def test_each_task_of_an_array_of_differing_agents_carries_its_own_pickles_hash(tmp_path):
    job, sweep, script = _submitted([*TINY, "launch.hang_timeout_s=300,600"], tmp_path, multirun=True)
    assert job.is_array and len(job.runs) == 2
    hashes = [hashlib.sha256(sweep.pickle(job.tag, t).read_bytes()).hexdigest() for t in range(2)]
    assert hashes[0] != hashes[1]
    assert [_exports(script, t)["DANLU_AGENT_SHA256"] for t in range(2)] == hashes


def test_each_task_checks_its_own_pickle_against_its_own_hash(tmp_path):
    """Task 1 accepts its own pickle and refuses task 0's, as the job side reads them."""
    from launcher.job.protocol import agent_refusal

    job, sweep, script = _submitted([*TINY, "launch.hang_timeout_s=300,600"], tmp_path, multirun=True)
    env = _exports(script, 1)
    assert agent_refusal(sweep.pickle(job.tag, 1), env) is None
    refusal = agent_refusal(sweep.pickle(job.tag, 0), env)
    assert refusal is not None and "not the one submitted (sha256 mismatch)" in refusal


def test_the_submitted_pickle_passes_its_check_and_runs_through_submitit(tmp_path):
    """A pickle whose hash the script carries is handed to submitit's runner, which runs it."""
    job, sweep, script = _submitted(TINY, tmp_path)
    ran = tmp_path / "ran"
    from submitit.core.utils import DelayedSubmission

    # the script carries the hash of the pickle at hand: here a callable that leaves a mark, not a training run
    DelayedSubmission(ran.write_text, "ran").dump(sweep.pickle(job.tag, 0))
    exports = dict(
        _exports(script), DANLU_AGENT_SHA256=hashlib.sha256(sweep.pickle(job.tag, 0).read_bytes()).hexdigest()
    )
    done = _job_side(sweep, job.tag, _job_env(exports), tmp_path)
    assert done.returncode == 0, done.stderr
    assert ran.read_text() == "ran"


def test_a_replaced_pickle_is_refused_before_it_is_unpickled(tmp_path):
    job, sweep, script = _submitted(TINY, tmp_path)
    planted = tmp_path / "planted-code-ran"
    pkl = sweep.pickle(job.tag, 0)
    pkl.write_bytes(pickle.dumps(Planted(planted)))
    done = _job_side(sweep, job.tag, _job_env(_exports(script)), tmp_path)
    assert not planted.exists(), "the job side unpickled a pickle that was not the one submitted"
    assert done.returncode != 0
    placed = sweep.submitit_dir / "15" / "15_submitted.pkl"
    assert f"danlu: the node agent {placed} is not the one submitted (sha256 mismatch): refusing to run it" in (
        done.stderr.splitlines()
    )
    assert _reason(done.stderr) == (
        "the node agent 15_submitted.pkl is not the one submitted (sha256 mismatch): refused to run it"
    )


def test_a_pickle_planted_where_submitit_looks_is_refused(tmp_path):
    """The file submitit's runner loads is the one checked, even when it was there before the job started."""
    job, sweep, script = _submitted([*TINY, "args.seed=1,2"], tmp_path, multirun=True)
    planted = tmp_path / "planted-code-ran"
    placed = sweep.submitit_dir / "12_1" / "12_1_submitted.pkl"
    placed.parent.mkdir()
    placed.write_bytes(pickle.dumps(Planted(planted)))
    done = _job_side(sweep, job.tag, _job_env(_exports(script, 1), task=1, array=True), tmp_path)
    assert not planted.exists(), "the job side unpickled a pickle that was not the one submitted"
    assert done.returncode != 0
    assert "(sha256 mismatch): refusing to run it" in done.stderr


def test_a_job_of_another_job_protocol_is_refused_naming_both_danlus(tmp_path):
    from launcher.job.protocol import JOB_PROTOCOL

    job, sweep, script = _submitted(TINY, tmp_path)
    planted = tmp_path / "planted-code-ran"
    sweep.pickle(job.tag, 0).write_bytes(pickle.dumps(Planted(planted)))
    exports = dict(_exports(script), DANLU_VERSION="0.0.7", DANLU_JOB_PROTOCOL=str(JOB_PROTOCOL + 1))
    done = _job_side(sweep, job.tag, _job_env(exports), tmp_path)
    assert not planted.exists()
    assert done.returncode != 0
    said = (
        f"danlu: this job was submitted by danlu 0.0.7 (job protocol {JOB_PROTOCOL + 1}); the job side here is "
        f"danlu {launcher.__version__} (protocol {JOB_PROTOCOL}): resubmit it"
    )
    assert said in done.stderr.splitlines()
    assert _reason(done.stderr) == (
        f"submitted by danlu 0.0.7 (job protocol {JOB_PROTOCOL + 1}); the job side here is "
        f"danlu {launcher.__version__} (protocol {JOB_PROTOCOL}): resubmit it"
    )


def test_a_job_whose_script_names_no_protocol_is_refused(tmp_path):
    """A script without the protocol's variables was written by a danlu that predates them."""
    from launcher.job.protocol import protocol_refusal

    refusal = protocol_refusal({})
    assert refusal is not None and refusal.endswith(": resubmit it")
    assert "without a job protocol" in refusal
    assert _reason(refusal).startswith("submitted by a danlu without a job protocol")


def test_another_danlu_version_of_the_same_protocol_runs(tmp_path):
    job, sweep, script = _submitted(TINY, tmp_path)
    ran = tmp_path / "ran"
    from submitit.core.utils import DelayedSubmission

    DelayedSubmission(ran.write_text, "ran").dump(sweep.pickle(job.tag, 0))
    digest = hashlib.sha256(sweep.pickle(job.tag, 0).read_bytes()).hexdigest()
    exports = dict(_exports(script), DANLU_AGENT_SHA256=digest, DANLU_VERSION="0.0.7")
    done = _job_side(sweep, job.tag, _job_env(exports), tmp_path)
    assert done.returncode == 0, done.stderr
    assert ran.read_text() == "ran"


def test_a_template_that_drops_the_checked_variables_stops_the_submit(tmp_path):
    """A copied template without the hash's line would make every job refuse to run: the plan stops first."""
    import dataclasses

    from launcher.errors import UserError
    from launcher.plan.render import render_script

    (job,) = plan_experiment(TINY)
    mine = tmp_path / "templates"
    mine.mkdir()
    launch = (REPO / "templates" / "launch.sh.j2").read_text()
    kept = "\n".join(line for line in launch.splitlines() if "DANLU_JOB_PROTOCOL" not in line) + "\n"
    (mine / "launch.sh.j2").write_text(kept)
    with pytest.raises(UserError, match="DANLU_AGENT_SHA256"):
        render_script(dataclasses.replace(job.plan, template_dir=str(mine)))
