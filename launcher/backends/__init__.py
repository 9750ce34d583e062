"""Where runs run: in Slurm jobs, or as processes of one host (the embedded local default). This package is the one
place that tells them apart. A backend is chosen from a run's spec while it is planned (`for_spec`) and from its
record in the store afterwards (`for_record`: the runs' cluster_kind column), never from the shape of a job id.
What differs between the places is a method of the backend: sending a job, withdrawing it, asking how its jobs are
(Slurm: `ask_slurm`, one sacct and one squeue for all; local: whether the process lives), cancelling them, and
where the batch script's own output goes.

A third place (Slurm reached over SSH) is a third subclass of `Backend`, registered in `_BACKENDS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .base import Backend
from .local_backend import LocalBackend
from .slurm_backend import SlurmAnswers, SlurmBackend, ask_slurm

__all__ = [
    "IN_SLURM",
    "Backend",
    "LocalBackend",
    "SlurmAnswers",
    "SlurmBackend",
    "ask_slurm",
    "batch_output",
    "by_backend",
    "for_kind",
    "for_record",
    "for_spec",
]

_BACKENDS: Dict[str, Backend] = {b.kind: b for b in (SlurmBackend(), LocalBackend())}
IN_SLURM = tuple(kind for kind, b in _BACKENDS.items() if b.in_slurm)  # the cluster kinds whose jobs are Slurm's


def for_kind(kind: str) -> Backend:
    """The backend of a cluster kind (a profile's `kind`, a run's recorded `cluster_kind`)."""
    try:
        return _BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown cluster kind {kind!r} (known: {', '.join(sorted(_BACKENDS))})") from None


def for_spec(spec: Any) -> Backend:
    """The backend a run of this spec (spec.options.RunSpec) goes to."""
    return for_kind(spec.cluster.kind)


def for_record(row: Any) -> Backend:
    """The backend a recorded run went to: a store row that holds the runs' cluster_kind column."""
    return for_kind(row["cluster_kind"])


def by_backend(rows: Iterable[Any]) -> List[Tuple[Backend, List[Any]]]:
    """Store rows grouped by the backend their run went to, in the order the backends first appear."""
    groups: Dict[str, List[Any]] = {}
    for row in rows:
        groups.setdefault(row["cluster_kind"], []).append(row)
    return [(for_kind(kind), members) for kind, members in groups.items()]


def batch_output(row: Any, job_id: Optional[str] = None) -> Optional[Path]:
    """Where the batch script's own output of a recorded attempt is (its job: `job_id`, else the row's); None where
    its backend writes none."""
    return for_record(row).batch_output(Path(row["run_dir"]), job_id or row["job_id"])
