"""The few Slurm commands danlu runs (sbatch, sacct, squeue, scancel, scontrol). slurm_parse.py reads what they
print; its names are importable from here too.

One refresh of `danlu status` makes one `sacct` call and at most one `squeue` call, whatever
the number of runs: job ids are passed together, array jobs by their array job id.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from typing import Callable, Dict, Iterable, List, Optional, Tuple

# slurm_parse's names, re-exported (`X as X`): the package, its tests and bench import them from here
from .slurm_parse import NO_NODES as NO_NODES
from .slurm_parse import SACCT_FORMAT as SACCT_FORMAT
from .slurm_parse import SQUEUE_FORMAT as SQUEUE_FORMAT
from .slurm_parse import JobInfo as JobInfo
from .slurm_parse import assigned_nodes as assigned_nodes
from .slurm_parse import base_state as base_state
from .slurm_parse import duration_seconds as duration_seconds
from .slurm_parse import expand_hostlist as expand_hostlist
from .slurm_parse import parse_elapsed as parse_elapsed
from .slurm_parse import parse_sacct as parse_sacct
from .slurm_parse import parse_squeue as parse_squeue
from .slurm_parse import parse_time as parse_time

COMMENT_PREFIX = "danlu:"  # every danlu job: sbatch --comment=danlu:<token>:<n> (crash recovery finds jobs by it)


def job_comment(tag: str) -> str:
    return f"{COMMENT_PREFIX}{tag}"


def tag_of(comment: str) -> str:
    """The <token>:<n> tag of a danlu job's comment ('' for other jobs)."""
    return comment[len(COMMENT_PREFIX) :] if comment.startswith(COMMENT_PREFIX) else ""


def job_name(run_ids: List[str], array: bool) -> str:
    """The --job-name of danlu's job for these runs: the run id of a single run, else their sweep
    (`rerun` when a rerun's array mixes sweeps)."""
    if not array and len(run_ids) == 1:
        return run_ids[0]
    sweeps = {r.rsplit("/", 1)[0] for r in run_ids}
    return sweeps.pop() if len(sweeps) == 1 else "rerun"


class SlurmUnavailable(Exception):
    """A Slurm command failed or is missing (e.g. sacct without slurmdbd)."""


def run(cmd: List[str], timeout: float = 60) -> str:
    if os.environ.get("DANLU_TRACE_SLURM"):  # tests count the calls made (failed ones too)
        with open(os.environ["DANLU_TRACE_SLURM"], "a") as f:
            f.write(cmd[0] + "\n")
    if shutil.which(cmd[0]) is None:
        raise SlurmUnavailable(f"{cmd[0]} not found")
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_ends_with_danlu() if cmd[0] == "sbatch" else None,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmUnavailable(f"{cmd[0]}: {e}") from None
    if done.returncode != 0:
        raise SlurmUnavailable(f"{cmd[0]}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _ends_with_danlu() -> Optional[Callable[[], None]]:
    """For the child: SIGKILL when danlu ends (Linux's parent-death signal). An sbatch left running by a killed danlu
    could queue its job after crash recovery looked for it; so it ends with danlu, and recovery waits only for the
    controller (recovery.SETTLE_S). Prepared here, so that the child only makes one system call."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # danlu ended before the signal was armed
            os._exit(1)

    return in_child


PR_SET_PDEATHSIG = 1


def query_ids(job_ids: Iterable[str]) -> List[str]:
    """Ids to ask Slurm about: array tasks by their array job id, so the list stays short."""
    return sorted({j.split("_")[0] for j in job_ids if j}, key=lambda s: (len(s), s))


def sacct(job_ids: Iterable[str]) -> Dict[str, JobInfo]:
    ids = query_ids(job_ids)
    if not ids:
        return {}
    return parse_sacct(run(["sacct", "-X", "-D", "-n", "-P", "-o", SACCT_FORMAT, "-j", ",".join(ids)]))


def squeue(job_ids: Iterable[str]) -> Dict[str, JobInfo]:
    ids = query_ids(job_ids)
    if not ids:
        return {}
    try:
        # -t all: jobs that ended within MinJobAge too, with the controller's final state. --local: no
        # REQUEST_FED_INFO first (squeue asks for it before a single job id), so one refresh costs slurmctld two
        # RPCs (the jobs, the partitions) whatever the number of runs (bench/RESULTS.md, section 2); danlu's jobs are
        # submitted to this cluster, never to a federation's siblings
        return parse_squeue(
            run(["squeue", "-h", "-r", "-t", "all", "--local", "-o", SQUEUE_FORMAT, "-j", ",".join(ids)])
        )
    except SlurmUnavailable as e:
        if "Invalid job id" in str(e):  # every id already gone from the controller
            return {}
        raise


def squeue_by_comment() -> Dict[str, JobInfo]:
    """All of the user's jobs the controller knows (ended ones within MinJobAge too) with their
    --comment (crash recovery looks up its tokens here)."""
    return parse_squeue(run(["squeue", "-h", "-r", "-t", "all", "--me", "-o", SQUEUE_FORMAT]))


def sacct_by_comment(days: int = 7) -> Dict[str, JobInfo]:
    """The user's jobs of the last `days` days, with name, comment and submit time. Many clusters do
    not store comments in accounting (AccountingStoreFlags=job_comment): then Comment is empty."""
    import getpass

    # every state named: without -s a time window leaves out jobs that never became eligible (held,
    # then cancelled); CF/CG are not accounted states and make sacct fail
    return parse_sacct(
        run(
            [
                "sacct",
                "-X",
                "-n",
                "-P",
                "-u",
                getpass.getuser(),
                "-S",
                f"now-{days}days",
                "-E",
                "now",
                "-s",
                "BF,CA,CD,DL,F,NF,OOM,PD,PR,R,RQ,RS,RV,S,TO",
                "-o",
                SACCT_FORMAT + ",Submit",
            ]
        )
    )


# sbatch failures after which the controller may have queued the job all the same: its answer was lost on the way
_ANSWER_LOST = (
    "timed out",
    "Timed out",
    "Zero Bytes were transmitted",
    "Connection reset",
    "Broken pipe",
    "unexpected answer",
    "Unexpected message",
    "Socket",
)
# ...and the ones that say it did not: the controller refused it, or sbatch never reached the controller
_REFUSED = ("Batch job submission failed", "sbatch: error:", "connect failure", "sbatch not found")


def sbatch_refused(message: str) -> bool:
    """True when sbatch's failure clearly means no job was queued; False when one may have been (a timeout, a lost
    connection, an answer danlu cannot read, or anything else it cannot tell apart)."""
    if any(marker in message for marker in _ANSWER_LOST):
        return False
    return any(marker in message for marker in _REFUSED)


def sbatch(script: "os.PathLike[str]") -> str:
    """Submit a batch script; returns the job id (of the array, for an array job)."""
    out = run(["sbatch", "--parsable", str(script)], timeout=120)
    job_id = out.strip().splitlines()[-1].split(";")[0] if out.strip() else ""
    if not job_id.isdigit():
        raise SlurmUnavailable(f"sbatch: unexpected answer {out.strip()!r}")
    return job_id


def kill_wait() -> Optional[int]:
    """The cluster's KillWait: seconds from SIGTERM to SIGKILL (scancel, time limit, a failed step)."""
    try:
        found = re.search(r"^KillWait\s*=\s*(.+)$", run(["scontrol", "show", "config"]), re.M)
    except SlurmUnavailable:
        return None
    return duration_seconds(found.group(1)) if found else None


def stop_grace(partition: Optional[str], qos: Optional[str] = None, killwait: Optional[int] = None) -> Optional[int]:
    """Seconds a job's processes have between SIGTERM and SIGKILL: the larger of the cluster's KillWait
    and the GraceTime of the partition or QOS (preemption). None when Slurm cannot say. Read on the login
    node, once per submit; the job side is handed the number."""
    graces = [killwait if killwait is not None else kill_wait()]
    if partition:
        try:
            m = re.search(r"\bGraceTime=(\S+)", run(["scontrol", "show", "partition", partition, "-o"]))
            graces.append(duration_seconds(m.group(1)) if m else None)
        except SlurmUnavailable:
            pass
    if qos:
        try:
            qos_grace = run(["sacctmgr", "-n", "-P", "show", "qos", qos, "format=GraceTime"]).strip()
            graces.append(duration_seconds(qos_grace))
        except SlurmUnavailable:
            pass
    known = [g for g in graces if g is not None]
    return max(known) if known else None


Place = Tuple[Optional[str], Optional[str]]  # (partition, qos)


def ask_stop_graces(places: Iterable[Place]) -> Dict[Place, Optional[int]]:
    """stop_grace of every distinct (partition, qos) of a submission; KillWait read once for all of them."""
    distinct = set(places)
    killwait = kill_wait() if distinct else None
    return {place: stop_grace(*place, killwait=killwait) for place in distinct}


def scancel(job_ids: Iterable[str]) -> None:
    ids = sorted(set(job_ids))
    if ids:
        run(["scancel", *ids])


def step_job_id(job_id: str) -> str:
    """The id `srun --jobid` takes (Slurm 22.05 refuses `<array>_<index>`): an array task's own job id, squeue's %A."""
    if "_" not in job_id:
        return job_id
    found = run(["squeue", "-h", "-j", job_id, "-o", "%A"]).split()
    if not found or not found[0].isdigit():
        raise SlurmUnavailable(f"squeue: no job id for array task {job_id} (answer {' '.join(found)!r})")
    return found[0]


def step_argv(
    command: List[str], job_id: Optional[str] = None, node: Optional[str] = None, pty: bool = False
) -> List[str]:
    """srun of one task on one node running `command`: inside the running job `job_id` on `node` (--overlap: beside
    the job's own steps, on its CPUs, memory and GPUs), or, without a job id, inside the allocation it is started in
    (salloc). `pty`: the task's terminal is srun's (an interactive shell)."""
    argv = ["srun"]
    if job_id is not None:
        argv += ["--overlap", f"--jobid={job_id}"]
    argv += ["--nodes=1", "--ntasks=1"]
    if node is not None:
        argv.append(f"--nodelist={node}")
    if pty:
        argv.append("--pty")
    return argv + command


# batch-only options of a job script's header, which an interactive allocation of the same shape leaves out
_BATCH_ONLY = (
    "--job-name",
    "--comment",
    "--output",
    "--open-mode",
    "--signal",
    "--requeue",
    "--no-requeue",
    "--array",
    "--mail-user",
    "--mail-type",
    "--export",
)


def salloc_argv(sbatch_options: List[str], job_name: str, command: List[str]) -> List[str]:
    """salloc of the shape a job script's header asks for (its `#SBATCH` options, batch-only ones left out) that runs
    `command` once it has the nodes, and releases them when the command ends."""
    kept = [o for o in sbatch_options if o.split("=", 1)[0] not in _BATCH_ONLY]
    return ["salloc", f"--job-name={job_name}", *kept, *command]
