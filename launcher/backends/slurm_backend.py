"""Runs in Slurm jobs: danlu's rendered batch script, node agents pickled by submitit, sbatch and scancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .. import slurm
from ..layout import RunLayout
from .base import ArraySize, Backend
from .submitit_jobs import submit_slurm


class SlurmBackend(Backend):
    kind = "slurm"
    in_slurm = True

    def send(self, job: Any) -> str:
        """One sbatch call: an array when the job has several runs; the (array) job id."""
        sweep = job.sweep_layout
        return submit_slurm(
            job.script_path,
            job.script_with_hashes,
            [r.agent() for r in job.runs],
            [sweep.pickle(job.tag, i) for i in range(len(job.runs))],
            job.runs[0].shape.time_minutes,
            shared=sweep.job_pickle(job.tag) if job.is_array else None,
        )

    def withdraw(self, job_id: str) -> None:
        slurm.scancel([job_id])

    def batch_output(self, run_dir: Path, job_id: Optional[str]) -> Optional[Path]:
        """Slurm's output file of the batch script, in the sweep's folder."""
        return RunLayout(run_dir).slurm_output(job_id)

    def cancel(self, rows: Sequence[Any], array_size: ArraySize) -> Dict[str, slurm.JobInfo]:
        """One scancel; then the controller is asked how each job ended (scancel is silent about jobs that ended in
        the meantime)."""
        slurm.scancel(scancel_ids(rows, array_size))
        try:
            return slurm.squeue([r["job_id"] for r in rows])
        except slurm.SlurmUnavailable:
            return {}


def scancel_ids(rows: Sequence[Any], array_size: ArraySize) -> List[str]:
    """A whole array by its array job id when every task of it is being cancelled: one short scancel."""
    ids = set()
    by_array: Dict[str, List[Any]] = {}
    for r in rows:
        if r["array_job_id"]:
            by_array.setdefault(r["array_job_id"], []).append(r)
        else:
            ids.add(r["job_id"])
    for array_id, members in by_array.items():
        if len(members) == array_size(array_id):
            ids.add(array_id)
        else:
            ids.update(m["job_id"] for m in members)
    return sorted(ids)
