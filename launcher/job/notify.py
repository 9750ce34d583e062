"""A failed run's message (notify.url, notify.on_failure), sent by its own batch script as the job ends.

`python -m launcher.job.notify REF FORMAT EXIT_CODE` runs after srun when the step failed: it names the run,
the reason (the same words `danlu status` gives, from the same logs) and the last lines of the log of the task
that failed first, and sends them; a delivery that fails is retried and said in the job's output, and never
changes the job's exit code. Once sent, the attempt's `notified` file keeps the summary job from repeating it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, List

from ..layout import RunLayout
from ..state.failure import failed_log, failure_text, log_tail
from ..state.reasons import classify, tail_lines
from ..webhook import deliver


def _job_id(environ: Dict[str, str]) -> str:
    if environ.get("SLURM_ARRAY_JOB_ID") and environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    return environ.get("SLURM_JOB_ID", "")


def message(exit_code: int, environ: Dict[str, str]) -> Dict[str, Any]:
    run_dir = RunLayout(Path(environ["DANLU_RUN_DIR"]))
    attempt = int(environ.get("DANLU_ATTEMPT", "1"))
    files = run_dir.attempt(attempt)
    job_id = _job_id(environ)
    slurm_out = run_dir.slurm_output(job_id)
    node = environ.get("SLURMD_NODENAME", "")
    reason = (
        classify(
            "FAILED", f"{exit_code}:0", node, lambda: tail_lines(files.log_files() + ([slurm_out] if slurm_out else []))
        )
        or f"exit code {exit_code}"
    )
    log = failed_log(files) or slurm_out
    tail = log_tail(log)
    run, sweep = environ.get("DANLU_RUN_ID", ""), environ.get("DANLU_SWEEP", "")
    where = f" (attempt {attempt}, job {job_id})" if job_id else f" (attempt {attempt})"
    return {
        "event": "run_failed",
        "sweep": sweep,
        "run": run,
        "attempt": attempt,
        "job_id": job_id,
        "state": "FAILED",
        "exit_code": exit_code,
        "reason": reason,
        "log": str(log) if log else None,
        "log_tail": tail,
        "text": failure_text(run, sweep, "FAILED", reason, where, log, tail),
    }


def main(argv: List[str]) -> int:
    ref, fmt, code = argv[0], argv[1], int(argv[2])
    environ = dict(os.environ)

    def say(msg: str) -> None:
        print(f"danlu: {msg}", file=sys.stderr, flush=True)

    msg = message(code, environ)
    if deliver(ref, fmt, msg, say, environ=environ):
        RunLayout(Path(environ["DANLU_RUN_DIR"])).attempt(msg["attempt"]).mark_notified(msg["reason"])
        say(f"notify: sent the failure of run {msg['run']}")
    return 0  # never the run's failure: the batch script exits with the step's own code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
