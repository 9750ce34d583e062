"""A plan's scripts as `--dry-run` prints them."""

from __future__ import annotations

from ..words import counted

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ..plan.planner import PlannedJob


def print_plan(jobs: list[PlannedJob]) -> None:
    """The scripts of a plan, exactly as they would go to sbatch (or run here, as local processes)."""
    for k, job in enumerate(jobs):
        if len(jobs) > 1:
            what = "local process" if job.local else "job"  # a local run is no Slurm job
            print(f"# ==== {what} {k + 1} of {len(jobs)}: {counted(len(job.runs), 'run')} ====")
        print(job.script, end="")
        extra = next((r.lightning_config for r in job.runs if r.lightning_config is not None), None)
        if extra is not None:
            others = len(job.runs) - 1
            print(
                f"# ==== the extra --config of run {job.runs[0].run_id}, written to {extra[0]}"
                + (f" ({counted(others, 'other run')}: the same, below its own folders)" if others else "")
                + " ===="
            )
            print(extra[1], end="")
