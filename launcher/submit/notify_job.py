"""The sweep's summary job (notify.url / notify.email): submitted right after the sweep's own jobs, it waits for
all of them (`--dependency=afterany:...`) and then runs `danlu notify SWEEP` on a compute node, so nothing has
to keep running on the login node. Its failure to be submitted never undoes the sweep: the runs are queued."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable, Iterable, Optional

from .. import slurm
from ..backends import for_spec
from ..layout import SweepLayout
from ..plan.planner import danlu_python
from ..plan.render import NotifyPlan, render_notify_script
from ..spec.options import RunSpec


def wanted(spec: RunSpec) -> bool:
    n = spec.notify
    return for_spec(spec).in_slurm and bool((n.url and n.summary) or n.email)


def plan(
    spec: RunSpec, sweep: str, layout: SweepLayout, partition: Optional[str], job_ids: Iterable[str]
) -> NotifyPlan:
    ids = [j.split("_")[0] for j in job_ids]  # an array task's id is <array id>_<task>: the array waits for all
    command = f"{danlu_python()} -m launcher.cli notify {shlex.quote(sweep)}"  # runs in the folder sbatch ran in
    return NotifyPlan(
        spec=spec,
        sweep=sweep,
        partition=partition,
        job_ids=ids,
        output=str(layout.notify_output_pattern()),
        command=command,
    )


def submit(notify: NotifyPlan, layout: SweepLayout) -> str:
    """Write the script and sbatch it; the summary job's id. Raises SlurmError/SlurmUnavailable/OSError."""
    script: Path = layout.notify_script
    script.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    script.write_text(render_notify_script(notify))
    return slurm.sbatch(script)


def submit_after(
    spec: RunSpec,
    sweep: str,
    layout: SweepLayout,
    partition: Optional[str],
    job_ids: Iterable[str],
    say: Callable[[str], None],
) -> Optional[str]:
    """Submit the summary job (if notify.* asks for one) after the sweep's jobs were; a failure is said, never
    raised: the runs are queued."""
    if not wanted(spec):
        return None
    try:
        job_id = submit(plan(spec, sweep, layout, partition, job_ids), layout)
    except (slurm.SlurmUnavailable, OSError) as e:
        say(f"warning: the summary job of {sweep} was not submitted: {e}")
        say(f"hint: the runs are queued; `danlu notify {sweep}` sends the summary by hand once they have ended")
        return None
    say(f"notify: summary job {job_id} runs once the jobs of {sweep} have ended")
    return job_id


def preview(spec: RunSpec, sweep: str, layout: SweepLayout, partition: Optional[str]) -> str:
    """The summary job's script as --dry-run prints it: the jobs it waits for are not known yet (@JOBS@)."""
    return render_notify_script(plan(spec, sweep, layout, partition, ["@JOBS@"]))
