"""What srun starts on every node of a danlu job: submitit's job-side runner for the pickled node agent.

    python -I -u -m launcher.job <submitit folder>/%j <pickle stem>

danlu writes each array task's pickle as `<pickle stem>.<task>.pkl` before sbatch (so that a job Slurm
accepted runs even if danlu died right after), or one `<pickle stem>.pkl` for all tasks when their agents are
alike but for the run (which the batch script exports as DANLU_RUN_ID); here it is linked to where submitit's
runner looks for it (submitit's own `JobPaths`), then submitit runs it.
Before that, the job side refuses a job of another job protocol and a pickle that is not the one submitted
(job/protocol.py): both are checked against what the batch script exports.

submitit imports numpy, when it is installed, before unpickling (so that pickles holding arrays load
cleanly). The node agent holds no arrays and never uses numpy, which would add ~50-80 ms to the start of
every node of every job: it is kept out of this process (the training processes it starts are not affected).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional

from .protocol import agent_refusal, protocol_refusal, version_note


def place_pickle(folder: str, stem: str) -> Path:
    """Make submitit's `submitted_pickle` of this job exist (idempotent; every task of the job may race here)."""
    import submitit
    from submitit.core.utils import JobPaths

    job_id = submitit.JobEnvironment().job_id  # <array job id>_<task> for array tasks
    target = JobPaths(folder, job_id=job_id).submitted_pickle
    if target.exists():
        return target
    source = Path(f"{stem}.{os.environ.get('SLURM_ARRAY_TASK_ID') or 0}.pkl")
    if (
        not source.exists()
    ):  # one agent for every task of the job (backends/submitit_jobs.pickle_agents): its run from the env
        source = Path(f"{stem}.pkl")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except FileExistsError:
        pass  # another task of this job was first
    except OSError:  # a file system without hard links
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    return target


def drop_stale_result(folder: str) -> None:
    """A requeue ends a start while submitit may be writing this task's result (`<result>.save_tmp`, then
    moved): left behind, it makes the next start's runner fail at its very end ("A temporary saved file already
    exists"), after the program had completed. Only this task of this start writes that file."""
    import submitit
    from submitit.core.utils import JobPaths

    env = submitit.JobEnvironment()
    result = JobPaths(folder, job_id=env.job_id, task_id=env.global_rank).result_pickle
    result.with_suffix(result.suffix + ".save_tmp").unlink(missing_ok=True)


def refuse(line: Optional[str]) -> None:
    """End this task before anything is unpickled, saying why in one line (state/reasons.py shows it)."""
    if line:
        print(line, file=sys.stderr, flush=True)
        sys.exit(3)


def main() -> None:
    # None in sys.modules blocks an import (`import numpy` now raises ImportError); typeshed allows modules only
    sys.modules.setdefault("numpy", None)  # type: ignore[arg-type]  # the import system's documented marker
    from submitit.core.submission import process_job

    if len(sys.argv) != 3:
        print("usage: python -m launcher.job <submitit folder> <pickle stem>", file=sys.stderr)
        sys.exit(2)
    folder, stem = sys.argv[1], sys.argv[2]
    mark = os.environ.get("DANLU_STEP_MARK")
    if mark:
        Path(mark).touch()  # this start's step exists: the batch script will not start it again
    refuse(protocol_refusal(os.environ))
    target = place_pickle(folder, stem)
    refuse(agent_refusal(target, os.environ))  # the very file submitit's runner loads next
    note = version_note(os.environ)
    if note and os.environ.get("SLURM_PROCID", "0") == "0":
        print(note, file=sys.stderr)
    drop_stale_result(folder)
    process_job(folder)


if __name__ == "__main__":
    main()
