"""The few Slurm commands danlu runs, and parsers for their output (tested on captured text).

One refresh of `danlu status` makes one `sacct` call and at most one `squeue` call, whatever
the number of runs: job ids are passed together, array jobs by their array job id.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from .procs import is_local

SACCT_FORMAT = "JobID,JobName%60,State,ExitCode,Reason,NodeList,Partition,Start,End,ElapsedRaw,Comment%80"
SQUEUE_FORMAT = "%i|%T|%r|%N|%P|%M|%D|%k|%F"


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


@dataclass
class JobInfo:
    job_id: str
    state: str
    reason: str = ""
    exit_code: str = ""
    nodelist: str = ""
    partition: str = ""
    start: Optional[str] = None
    end: Optional[str] = None
    elapsed: Optional[int] = None
    comment: str = ""
    source: str = "sacct"
    restarts: int = 0
    name: str = ""
    submit: Optional[str] = None  # only from sacct_recent
    raw: str = ""  # sacct's own line(s) for the job, every record of it (-D: one per start): `danlu show`

    @property
    def started(self) -> Optional[float]:
        return parse_time(self.start)

    @property
    def ended(self) -> Optional[float]:
        return parse_time(self.end)


@lru_cache(maxsize=4096)
def parse_time(text: Optional[str]) -> Optional[float]:
    """sacct's local ISO time ('2026-11-22T07:47:23') -> epoch seconds; None for Unknown/None.

    Not time.strptime: 10x slower, and a refresh may parse 20,000 of these."""
    if not text or text in ("Unknown", "None", "N/A"):
        return None
    try:
        if len(text) != 19 or text[10] != "T":
            raise ValueError(text)
        return time.mktime(
            (
                int(text[0:4]),
                int(text[5:7]),
                int(text[8:10]),
                int(text[11:13]),
                int(text[14:16]),
                int(text[17:19]),
                0,
                1,
                -1,
            )
        )
    except (ValueError, OverflowError):
        return None


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


def base_state(state: str) -> str:
    """'CANCELLED by 0' -> 'CANCELLED'; 'COMPLETED+' etc. stay readable."""
    return state.split()[0].rstrip("+") if state else "UNKNOWN"


def expand_hostlist(text: str) -> List[str]:
    """Slurm's compact host list -> host names, as `scontrol show hostnames` gives them (no call to Slurm):
    'node[1-3,7],gpu-a[08-10]' -> node1 node2 node3 node7 gpu-a08 gpu-a09 gpu-a10."""
    hosts: List[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,\[]*", text or ""):
        m = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not m:
            hosts.append(part)
            continue
        head, spec, tail = m.groups()
        for piece in spec.split(","):
            lo, _, hi = piece.partition("-")
            width = len(lo) if lo.startswith("0") else 0
            for i in range(int(lo), int(hi or lo) + 1):
                hosts.append(f"{head}{i:0{width}d}{tail}")
    return hosts


def _expand_array(job_id: str) -> List[str]:
    """'123_[0-3,7]' -> ['123_0', ..., '123_7'] (pending array tasks in sacct)."""
    if "_[" not in job_id:
        return [job_id]
    base, spec = job_id.split("_[", 1)
    spec = spec.rstrip("]").split("%")[0]
    out: List[str] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(f"{base}_{i}" for i in range(int(a), int(b) + 1))
        elif part:
            out.append(f"{base}_{part}")
    return out


NO_NODES = ("None assigned", "(null)")  # sacct's NodeList of a job that never had nodes (cancelled while pending)


def assigned_nodes(nodelist: Optional[str]) -> str:
    """A node list as Slurm printed it or the store keeps it, "" when the job never had nodes."""
    return "" if not nodelist or nodelist in NO_NODES else nodelist


def parse_sacct(text: str) -> Dict[str, JobInfo]:
    """Parse `sacct -X -D -n -P -o SACCT_FORMAT`. With -D, a requeued job shows each run; the last wins
    and the earlier ones are counted as restarts."""
    jobs: Dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 11:
            continue
        jid, name, state, exit_code, reason, nodelist, partition, start, end, elapsed, comment = parts[:11]
        submit = parts[11] if len(parts) > 11 and parts[11] not in ("Unknown", "None", "") else None
        for one in _expand_array(jid):
            prev = jobs.get(one)
            info = JobInfo(
                job_id=one,
                state=state,
                reason="" if reason == "None" else reason,
                exit_code=exit_code,
                nodelist=assigned_nodes(nodelist),
                partition=partition,
                start=None if start in ("Unknown", "None", "") else start,
                end=None if end in ("Unknown", "None", "") else end,
                elapsed=int(elapsed) if elapsed.isdigit() else None,
                comment=comment,
                source="sacct",
                name=name.strip(),
                submit=submit,
            )
            info.raw = line
            if prev is not None:
                info.restarts = prev.restarts + 1
                info.raw = prev.raw + "\n" + line
            jobs[one] = info
    return jobs


def parse_squeue(text: str) -> Dict[str, JobInfo]:
    jobs: Dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 9:
            continue
        jid, state, reason, nodelist, partition, elapsed, _nodes, comment, _array = parts[:9]
        for one in _expand_array(jid):
            jobs[one] = JobInfo(
                job_id=one,
                state=state,
                reason="" if reason == "None" else reason,
                nodelist=nodelist,
                partition=partition,
                elapsed=parse_elapsed(elapsed),
                comment=comment,
                source="squeue",
            )
    return jobs


def parse_elapsed(text: str) -> Optional[int]:
    """squeue %M: [D-][HH:]MM:SS -> seconds."""
    text = text.strip()
    if not text or text in ("INVALID", "N/A"):
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def query_ids(job_ids: Iterable[str]) -> List[str]:
    """Ids to ask Slurm about: array tasks by their array job id, so the list stays short."""
    return sorted({j.split("_")[0] for j in job_ids if j and not is_local(j)}, key=lambda s: (len(s), s))


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


def duration_seconds(text: str) -> Optional[int]:
    """'30 sec', '0', '00:01:00', '1-00:00:00' -> seconds (None if unreadable)."""
    text = text.strip().replace(" sec", "")
    if text.isdigit():
        return int(text)
    try:
        return parse_elapsed(text)
    except ValueError:
        return None


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


def stop_graces(places: Iterable[Place]) -> Dict[Place, Optional[int]]:
    """stop_grace of every distinct (partition, qos) of a submission; KillWait read once for all of them."""
    distinct = set(places)
    killwait = kill_wait() if distinct else None
    return {place: stop_grace(*place, killwait=killwait) for place in distinct}


def scancel(job_ids: Iterable[str]) -> None:
    ids = sorted(set(job_ids))
    if ids:
        run(["scancel", *ids])
