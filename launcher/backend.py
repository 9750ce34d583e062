"""Submission through submitit: Slurm with danlu's own sbatch template, or this machine.

`SlurmTemplateExecutor` keeps submitit's machinery (pickled callable per array task, job ids,
job objects) but the script it hands to sbatch is danlu's rendered template. Arrays go out as
one sbatch call. `submit_local` uses submitit's local executor with the same environment lines.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, List, Sequence

import submitit
from submitit.core import utils as submitit_utils
from submitit.slurm.slurm import SlurmJob


class SlurmTemplateExecutor(submitit.SlurmExecutor):
    """A submitit Slurm executor whose submission file is produced by `make_script(command)`."""

    def __init__(self, folder: Path, make_script: Callable[[str], str], script_path: Path, pickle_stem: str) -> None:
        super().__init__(folder=folder, max_num_timeout=0, python=shlex.quote(sys.executable))
        self._make_script = make_script
        self._script_path = script_path
        self._pickle_stem = pickle_stem

    def _make_submission_file_text(self, command: str, uid: str) -> str:
        text = self._make_script(command)
        self._script_path.write_text(text)
        self._script_path.chmod(0o600)
        return text

    def _internal_process_submissions(self, delayed_submissions: List[Any]) -> List[Any]:
        """One sbatch call for all submissions (an array when there are several)."""
        folder = submitit_utils.JobPaths.get_first_id_independent_folder(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        pickles = []
        for i, d in enumerate(delayed_submissions):
            # a name the script knows before sbatch: a job whose danlu died before the move below
            # takes its pickle from here (templates/launch.sh.j2)
            path = Path(f"{self._pickle_stem}.{i}.pkl")
            d.set_timeout(self.parameters.get("time", 5), self.max_num_timeout)
            d.dump(path)
            pickles.append(path)
        with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's stderr; the error carries it
            first = self._submit_command(self._submitit_command_str)
        if len(delayed_submissions) == 1:
            first.paths.move_temporary_file(pickles[0], "submitted_pickle")
            return [first]
        jobs = [SlurmJob(folder=self.folder, job_id=f"{first.job_id}_{i}", tasks=[0]) for i in range(len(pickles))]
        for job, path in zip(jobs, pickles):
            job.paths.move_temporary_file(path, "submitted_pickle")
        return jobs


def submit_slurm(folder: Path, make_script: Callable[[str], str], script_path: Path, agents: Sequence[Any],
                 pickle_stem: str) -> str:
    """Submit one job (an array when len(agents) > 1) in one sbatch call; returns the (array) job id."""
    executor = SlurmTemplateExecutor(folder, make_script, script_path, pickle_stem)
    jobs = executor._internal_process_submissions([submitit_utils.DelayedSubmission(a) for a in agents])
    return str(jobs[0].job_id).split("_")[0]


def submit_local(folder: Path, setup: List[str], agent: Any, tasks: int, timeout_min: int) -> str:
    """Start the run on this machine through submitit's local executor; returns its job id (pid)."""
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(tasks_per_node=tasks, timeout_min=timeout_min, setup=setup, gpus_per_node=0)
    job = executor.submit(agent)
    return str(job.job_id)
