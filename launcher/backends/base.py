"""What every backend does (launcher/backends/__init__.py chooses one)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Optional, Sequence

from ..slurm import JobInfo

ArraySize = Callable[[str], int]  # an array job id -> how many tasks the store holds of it


class Backend(ABC):
    kind: ClassVar[str]  # the cluster kind of its profiles (cluster.kind) and of its runs' records (cluster_kind)
    # its jobs are Slurm's: checked against the live cluster, stopped within a partition's grace, grouped into
    # arrays, followed by a summary job (notify.*), asked with sacct and squeue
    in_slurm: ClassVar[bool]

    @abstractmethod
    def send(self, job: Any) -> str:
        """Start one planned job (plan.planner.PlannedJob) whose folders exist; its job id as the store keeps it."""

    @abstractmethod
    def withdraw(self, job_id: str) -> None:
        """Stop a job just sent whose runs the store no longer waits for."""

    @abstractmethod
    def batch_output(self, run_dir: Path, job_id: Optional[str]) -> Optional[Path]:
        """Where the batch script's own output of this job is (None where there is none)."""

    @abstractmethod
    def cancel(self, rows: Sequence[Any], array_size: ArraySize) -> Dict[str, JobInfo]:
        """Stop the jobs of these active attempts (store rows); how the ones that ended meanwhile ended, by job id,
        where the backend can say."""

    def alive(self, job_id: Optional[str]) -> Optional[bool]:
        """Whether the job's process lives, where this host can see it (None: its scheduler is asked instead)."""
        return None

    def judged_elsewhere(self, job_id: Optional[str]) -> Optional[str]:
        """Where a job must be asked about and cancelled, when not from this host ("host X"); None: from here."""
        return None
