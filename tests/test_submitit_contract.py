"""What danlu needs of submitit beyond its documented API, checked so that a new submitit fails here, loudly,
and not in a job on a cluster: the pickling of a callable (`DelayedSubmission`), where the job-side runner
looks for it (`JobPaths.submitted_pickle`) and the runner itself (`submission.process_job(folder)`), driven
here exactly as `python -m launcher.job` is driven inside a Slurm job."""

from __future__ import annotations

import hashlib
import inspect
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from danlu_helpers import REPO
from test_agent_integrity import _job_env


def _pinned_range() -> tuple:
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(r'"submitit>=([\d.]+),<([\d.]+)"', text)
    assert m, "pyproject.toml pins submitit to a tested range (submitit>=X,<Y)"
    return tuple(int(x) for x in m.group(1).split(".")), tuple(int(x) for x in m.group(2).split("."))


def test_installed_submitit_is_in_the_tested_range():
    low, high = _pinned_range()
    version = tuple(int(x) for x in re.findall(r"\d+", metadata.version("submitit"))[:3])
    assert low <= version < high, (version, low, high)


def test_the_private_pieces_have_the_shape_danlu_uses():
    from submitit.core import submission
    from submitit.core.utils import DelayedSubmission, JobPaths

    assert list(inspect.signature(submission.process_job).parameters) == ["folder"]
    paths = JobPaths("/runs/s/.submitit/%j", job_id="12_3")
    assert paths.submitted_pickle == Path("/runs/s/.submitit/12_3/12_3_submitted.pkl")
    for name in ("dump", "load", "set_timeout", "result"):
        assert callable(getattr(DelayedSubmission, name)), name


def _write_marker(path: str, text: str) -> str:
    Path(path).write_text(text)
    return text


def test_job_side_runs_a_pickle_written_before_sbatch(tmp_path):
    """The pickle of array task 3 of job 12, written under danlu's name, runs through launcher.job as in Slurm."""
    from submitit.core.utils import DelayedSubmission, JobPaths

    from launcher.job.protocol import JOB_PROTOCOL
    from launcher.layout import SweepLayout

    sweep = SweepLayout(tmp_path / "sweep")
    sweep.submitit_dir.mkdir(parents=True)
    marker = tmp_path / "ran"
    DelayedSubmission(_write_marker, str(marker), "hello from task 3").dump(sweep.pickle("tok:0", 3))
    # what the batch script exports for the job side to check (launcher/job/protocol.py)
    exports = {
        "DANLU_JOB_PROTOCOL": str(JOB_PROTOCOL),
        "DANLU_AGENT_SHA256": hashlib.sha256(sweep.pickle("tok:0", 3).read_bytes()).hexdigest(),
    }
    env = dict(_job_env(exports, task=3, array=True), PYTHONPATH=f"{Path(__file__).parent}")
    done = subprocess.run(
        [sys.executable, "-m", "launcher.job", str(sweep.submitit_folder()), str(sweep.pickle_stem("tok:0"))],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "hello from task 3"
    assert JobPaths(str(sweep.submitit_folder()), job_id="12_3").submitted_pickle.exists()
    assert JobPaths(str(sweep.submitit_folder()), job_id="12_3", task_id=0).result_pickle.exists()
