"""Runs as processes of one host, through submitit's local executor: no scheduler, no batch script of Slurm's.
A local run's job id is `local-<host>-<pid>` (local_jobs.py): its host alone may judge or signal the process."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from ..procs import pid_alive, terminate
from ..slurm import JobInfo
from .base import ArraySize, Backend
from .local_jobs import LocalJob, local_job_id, parse_local_job_id, this_host
from .submitit_jobs import submit_local


class LocalBackend(Backend):
    kind = "local"
    in_slurm = False

    def send(self, job: Any) -> str:
        """Start the job's one run on this host; its script holds the shell lines run before the node agent."""
        this_host()  # a host name no job id can hold stops the submit before a process starts
        first = job.runs[0]
        setup = job.local_setup
        job.script_path.write_text("\n".join(setup) + "\n")
        job.script_path.chmod(0o600)
        pid = submit_local(
            job.sweep_layout.submitit_folder(),
            setup,
            first.agent(),
            tasks=first.shape.tasks_per_node,
            timeout_min=first.shape.time_minutes,
        )
        return local_job_id(int(pid))

    def withdraw(self, job_id: str) -> None:
        found = self.process(job_id)
        if found is not None:
            terminate(found.pid, signal.SIGTERM)

    def batch_output(self, run_dir: Path, job_id: Optional[str]) -> Optional[Path]:
        return None

    def cancel(self, rows: Sequence[Any], array_size: ArraySize) -> Dict[str, JobInfo]:
        """SIGTERM to each run's process (its host was checked: `judged_elsewhere`)."""
        for r in rows:
            found = self.process(r["job_id"])
            if found is not None:
                try:
                    terminate(found.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        return {}

    def alive(self, job_id: Optional[str]) -> Optional[bool]:
        found = self.process(job_id)
        return found is not None and found.here and pid_alive(found.pid)

    def judged_elsewhere(self, job_id: Optional[str]) -> Optional[str]:
        """A local run's pid names a process of its own host only."""
        found = self.process(job_id)
        return found.where if found is not None and not found.here else None

    @staticmethod
    def process(job_id: Optional[str]) -> Optional[LocalJob]:
        """The host and pid a local run's job id names (None for a malformed one)."""
        return parse_local_job_id(job_id)
