"""Runs in Slurm jobs: danlu's rendered batch script, node agents pickled by submitit, sbatch and scancel."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import slurm
from ..layout import RunLayout
from .base import ArraySize, Backend
from .submitit_jobs import submit_slurm


@dataclass
class SlurmAnswers:
    """What sacct and squeue said of the jobs asked about (`*_ok`: whether each answered at all)."""

    acct: Dict[str, slurm.JobInfo] = field(default_factory=dict)
    queue: Dict[str, slurm.JobInfo] = field(default_factory=dict)
    acct_ok: bool = True
    queue_ok: bool = True


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


def ask_slurm(slurm_ids: List[str]) -> Tuple[SlurmAnswers, List[str]]:
    """sacct and squeue at once: a busy controller or slurmdbd answers each in a fraction of a second or more."""
    answers, notes = SlurmAnswers(), list[str]()
    if not slurm_ids:
        return answers, notes
    asked: Dict[str, Any] = {}

    def ask_accounting() -> None:
        try:
            asked["acct"] = slurm.sacct(slurm_ids)
        except slurm.SlurmUnavailable as e:
            asked["error"] = e

    thread = threading.Thread(target=ask_accounting, daemon=True)
    thread.start()
    try:
        answers.queue = slurm.squeue(slurm_ids)
    except slurm.SlurmUnavailable as e:
        answers.queue_ok = False
        queue_note = f"squeue failed ({_short(e)})"
    thread.join()
    answers.acct = asked.get("acct", {})
    if "error" in asked:
        answers.acct_ok = False
        notes.append(
            f"sacct is unavailable ({_short(asked['error'])}): states come from squeue and the runs' "
            "result files; what neither knows is UNKNOWN"
        )
    if not answers.queue_ok:
        notes.append(queue_note)
    return answers, notes


def _short(e: Exception) -> str:
    """The last line of a Slurm command's complaint, e.g. 'Problem talking to the database: Connection refused'."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(e).__name__
    text = re.sub(r"^(?:\w+: )?(?:\w+: error: )", "", text)
    return text if len(text) <= 160 else text[:157] + "..."
