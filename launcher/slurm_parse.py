"""What Slurm's commands print, read into Python values (no call to Slurm; tested on captured text in
tests/captured): sacct's and squeue's job records, their times and durations, host and node lists.
launcher/slurm.py runs the commands and re-exports these names."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional

SACCT_FORMAT = "JobID,JobName%60,State,ExitCode,Reason,NodeList,Partition,Start,End,ElapsedRaw,Comment%80"
SQUEUE_FORMAT = "%i|%T|%r|%N|%P|%M|%D|%k|%F"


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


def duration_seconds(text: str) -> Optional[int]:
    """'30 sec', '0', '00:01:00', '1-00:00:00' -> seconds (None if unreadable)."""
    text = text.strip().replace(" sec", "")
    if text.isdigit():
        return int(text)
    try:
        return parse_elapsed(text)
    except ValueError:
        return None
