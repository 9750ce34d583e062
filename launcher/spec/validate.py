"""Checks a run specification against its cluster profile, before anything is submitted.

`shape()` derives what the sbatch header and the node agent need (partition, tasks, CPUs,
processes); every problem is a UserError naming the key and how to fix it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..backends import for_spec
from ..errors import UserError
from ..words import counted
from .file_checks import file_problems
from .options import ClusterSpec, PartitionSpec, RunSpec

LAUNCH_KINDS = ("accelerate", "torchrun", "lightning", "python")
PER_NODE_LAUNCHERS = ("accelerate", "torchrun")
ENV_KINDS = ("none", "uv", "venv", "conda")
CLUSTER_KINDS = ("local", "slurm")
HANG_STACKS = ("auto", "faulthandler", "off")
SIGNALS = ("USR1", "USR2", "TERM", "INT", "HUP", "URG")

_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?\Z")
_MEM = re.compile(r"^(?P<n>\d+)(?P<u>[KMGT]?)B?\Z", re.IGNORECASE)
_MEM_MB = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_NAMES = {"\n": "newline", "\r": "carriage return", "\t": "tab", "\x1b": "escape", "\x7f": "DEL", "\x00": "NUL"}
# The program's own arguments: each is quoted as one word of its command, and the program reads what it is given.
_PROGRAM_VALUES = ("args", "program_args")


@dataclass(frozen=True)
class Shape:
    """What a run asks of Slurm, derived once from the spec."""

    partition: Optional[str]
    nodes: int
    gpus_per_node: int
    gpu_type: Optional[str]
    tasks_per_node: int
    cpus_per_task: int
    procs_per_node: int  # training processes per node (ranks)
    time_minutes: int
    mem: Optional[str]

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node


def parse_time(text: str, key: str = "resources.time") -> int:
    """Slurm time string to minutes; UserError for anything Slurm would reject."""
    hint = f"use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, e.g. {key}=04:00:00"
    m = _TIME.match(str(text).strip())
    if not m:
        raise UserError(f"bad time {text!r} for {key}", hint)
    d, a, b, c = (m.group(k) for k in "dabc")
    days = int(d) if d else 0
    if d is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = int(a), int(b or 0), int(c or 0)
        if hours > 23:
            raise UserError(f"bad time {text!r}: hours must be 0-23 after 'D-'", hint)
    elif c is not None:  # HH:MM:SS
        hours, minutes, seconds = int(a), int(b), int(c)
    elif b is not None:  # MM:SS
        hours, minutes, seconds = 0, int(a), int(b)
    else:  # MM
        hours, minutes, seconds = 0, int(a), 0
    if seconds > 59 or (c is not None and minutes > 59) or (d is not None and b is not None and minutes > 59):
        raise UserError(f"bad time {text!r}: minutes and seconds must be 0-59", hint)
    total = days * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    if total <= 0:
        raise UserError(f"bad time {text!r}: the time limit must be positive", hint)
    return total


def parse_mem_mb(text: str) -> int:
    m = _MEM.match(str(text).strip())
    if not m:
        raise UserError(
            f"bad memory {text!r}", "use a number with an optional unit K, M, G or T, e.g. resources.mem=64G"
        )
    mb = int(int(m.group("n")) * _MEM_MB[m.group("u").upper()])
    if mb <= 0:
        raise UserError(f"bad memory {text!r}: must be positive", "e.g. resources.mem=64G")
    return mb


def _strings(value: Any, key: str) -> Iterator[Tuple[str, str]]:
    """(what to call it, text) for every string in an option's value: fields, mapping names and values, items."""
    if is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            if not key and f.name in _PROGRAM_VALUES:
                continue
            yield from _strings(getattr(value, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(value, dict):
        for name, item in value.items():
            yield f"a name in {key}", str(name)
            yield from _strings(item, f"{key}.{name}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _strings(item, f"{key}[{i}]")
    elif isinstance(value, str):
        yield key, value


def control_characters(spec: RunSpec) -> None:
    """UserError for the first option holding a control character.

    Every option but the program's own arguments ends up in the batch script: its #SBATCH lines, its environment or
    the case block of its runs. A newline there starts a new line of the script, which bash runs as a command.
    """
    for key, text in _strings(spec, ""):
        found = _CONTROL.search(text)
        if found:
            char = found.group()
            name = _CONTROL_NAMES.get(char, f"U+{ord(char):04X}")
            raise UserError(
                f"{key} contains a control character ({name})",
                "give it on one line of printable characters: each line of the job script is one option or command",
            )


def _choice(value: str, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise UserError(f"unknown {key} {value!r}", f"choose one of: {', '.join(allowed)}")


def shape(spec: RunSpec) -> Shape:
    """What the run asks of Slurm; UserError for the first option its cluster profile (or Slurm) would refuse."""
    r, c = spec.resources, spec.cluster
    _choices(spec)
    _notify_form(spec)
    _counts(spec)
    minutes = parse_time(r.time)
    mem_mb = parse_mem_mb(r.mem) if r.mem else None
    tasks, procs, cpus = _ranks(spec)

    partition = r.partition or c.default_partition
    gpu_type = r.gpu_type
    if not for_spec(spec).in_slurm:
        if r.nodes != 1:
            raise UserError(
                f"resources.nodes={r.nodes}: the local cluster has one node",
                "use cluster=<your slurm cluster> for multi-node runs",
            )
        return Shape(None, 1, r.gpus_per_node, gpu_type, tasks, cpus, procs, minutes, r.mem)

    asked = Shape(partition, r.nodes, r.gpus_per_node, gpu_type, tasks, cpus, procs, minutes, r.mem)
    if c.partitions:
        return _on_partition(spec, asked, mem_mb)
    return asked


def _choices(spec: RunSpec) -> None:
    """Every option that names one of a few choices names one of them."""
    _choice(spec.cluster.kind, CLUSTER_KINDS, "cluster.kind")
    _choice(spec.launch.kind, LAUNCH_KINDS, "launch.kind")
    _choice(spec.env.kind, ENV_KINDS, "env.kind")
    _choice(spec.requeue.signal, SIGNALS, "requeue.signal")
    from .program_args import LIST_STYLES

    for key, style in spec.arg_lists.items():
        _choice(style, LIST_STYLES, f"arg_lists.{key}")


def _counts(spec: RunSpec) -> None:
    """A program to run, and every count of the spec in its range."""
    r, launch = spec.resources, spec.launch
    if not spec.program:
        raise UserError(
            "no program to run (program is null)", "pick an experiment (experiment=tiny_dpo) or set program=train.py"
        )
    if r.nodes < 1:
        raise UserError(f"resources.nodes={r.nodes}: a job needs at least one node", "set resources.nodes=1 or more")
    if r.gpus_per_node < 0:
        raise UserError(
            f"resources.gpus_per_node={r.gpus_per_node} is negative", "set resources.gpus_per_node=0 for a CPU job"
        )
    if r.cpus_per_gpu < 1 or (r.cpus_per_task is not None and r.cpus_per_task < 1):
        raise UserError(
            "CPUs per GPU and per task must be at least 1", "set resources.cpus_per_gpu=8 (or resources.cpus_per_task)"
        )
    if spec.requeue.grace_s < 0 or spec.requeue.max_requeues < 0:
        raise UserError(
            "requeue.grace_s and requeue.max_requeues must be >= 0", "e.g. requeue.grace_s=120 requeue.max_requeues=3"
        )
    if launch.hang_timeout_s is not None and launch.hang_timeout_s < 1:
        raise UserError(
            f"launch.hang_timeout_s={launch.hang_timeout_s} must be >= 1", "or null to never end a silent job"
        )
    if launch.hang_stacks not in HANG_STACKS:
        raise UserError(
            f"launch.hang_stacks={launch.hang_stacks!r} is not one of {', '.join(HANG_STACKS)}",
            "set launch.hang_stacks=auto (py-spy where it can attach, else faulthandler)",
        )
    if spec.sweep.max_parallel is not None and spec.sweep.max_parallel < 1:
        raise UserError(f"sweep.max_parallel={spec.sweep.max_parallel} must be >= 1", "or null for no limit")
    _code_limits(spec)


def _code_limits(spec: RunSpec) -> None:
    code = spec.code
    if code.max_file_mb <= 0 or code.max_total_mb <= 0 or code.max_files < 1:
        raise UserError(
            f"code.max_file_mb={code.max_file_mb:g}, code.max_total_mb={code.max_total_mb:g} and "
            f"code.max_files={code.max_files} must be positive",
            "e.g. code.max_file_mb=10 code.max_total_mb=200 code.max_files=20000 (or code.freeze=false)",
        )


def _ranks(spec: RunSpec) -> Tuple[int, int, int]:
    """(Slurm tasks per node, training processes per node, CPUs per task): a per-node launcher (accelerate,
    torchrun) is one task that starts a process per GPU; any other launch is a task per GPU."""
    r, launch = spec.resources, spec.launch
    if launch.tasks_per_node is not None:
        if launch.tasks_per_node < 1:
            raise UserError(f"launch.tasks_per_node={launch.tasks_per_node} must be >= 1", "or null to derive it")
        tasks = launch.tasks_per_node
    elif launch.kind in PER_NODE_LAUNCHERS:
        tasks = 1
    else:
        tasks = max(1, r.gpus_per_node)
    procs = max(1, r.gpus_per_node) if launch.kind in PER_NODE_LAUNCHERS else tasks
    if r.cpus_per_task is not None:
        cpus = r.cpus_per_task
    else:
        cpus = max(1, r.cpus_per_gpu * max(1, r.gpus_per_node) // tasks)
    return tasks, procs, cpus


def _on_partition(spec: RunSpec, asked: Shape, mem_mb: Optional[int]) -> Shape:
    """The run held against its partition of the cluster profile, with the partition's GPU type where the run names
    none."""
    partition, p = _listed(spec.cluster, asked.partition)
    gpu_type = _gpu_type(spec, partition, p)
    _fits(spec, partition, p, asked, mem_mb)
    return replace(asked, gpu_type=gpu_type)


def _listed(c: ClusterSpec, partition: Optional[str]) -> Tuple[str, PartitionSpec]:
    """The run's partition, which the cluster profile lists."""
    if partition is None:
        raise UserError(
            "no partition given and the cluster has no default_partition",
            f"set resources.partition to one of: {', '.join(c.partitions)}",
        )
    if partition not in c.partitions:
        raise UserError(
            f"unknown partition {partition!r} on cluster {c.name!r}", f"partitions: {', '.join(c.partitions)}"
        )
    return partition, c.partitions[partition]


def _gpu_type(spec: RunSpec, partition: str, p: PartitionSpec) -> Optional[str]:
    """The GPU type of a GPU run: the run's, which the partition must have, else the partition's."""
    r, c = spec.resources, spec.cluster
    gpu_type = r.gpu_type
    if gpu_type is not None and r.gpus_per_node > 0 and p.gpu_type is not None and gpu_type != p.gpu_type:
        types = sorted({q.gpu_type for q in c.partitions.values() if q.gpu_type})
        raise UserError(
            f"unknown GPU type {gpu_type!r} on partition {partition!r} (it has {p.gpu_type})",
            f"GPU types on {c.name}: {', '.join(types)}; or set resources.gpu_type=null",
        )
    if gpu_type is None and r.gpus_per_node > 0:
        return p.gpu_type
    return gpu_type


def _fits(spec: RunSpec, partition: str, p: PartitionSpec, asked: Shape, mem_mb: Optional[int]) -> None:
    """UserError for what the partition has not: GPUs per node, nodes, CPUs per node, memory per node, time."""
    r = spec.resources
    tasks, cpus = asked.tasks_per_node, asked.cpus_per_task
    if r.gpus_per_node > p.gpus_per_node:
        raise UserError(
            f"resources.gpus_per_node={r.gpus_per_node} but nodes of {partition!r} have "
            f"{counted(p.gpus_per_node, 'GPU')}",
            f"ask for at most {counted(p.gpus_per_node, 'GPU')} per node and more nodes (resources.nodes)",
        )
    if r.nodes > p.nodes:
        raise UserError(
            f"resources.nodes={r.nodes} but partition {partition!r} has {counted(p.nodes, 'node')}",
            f"ask for at most {counted(p.nodes, 'node')}",
        )
    if cpus * tasks > p.cpus_per_node:
        raise UserError(
            f"{counted(tasks, 'task')} x {counted(cpus, 'CPU')} per node but nodes of {partition!r} have "
            f"{counted(p.cpus_per_node, 'CPU')}",
            "lower resources.cpus_per_gpu or resources.cpus_per_task",
        )
    if mem_mb and p.mem_per_node and mem_mb > parse_mem_mb(p.mem_per_node):
        raise UserError(
            f"resources.mem={r.mem} but nodes of {partition!r} have {p.mem_per_node}",
            f"ask for at most {p.mem_per_node}",
        )
    if p.max_time and asked.time_minutes > parse_time(p.max_time):
        raise UserError(
            f"resources.time={r.time} exceeds the {p.max_time} limit of {partition!r}",
            "ask for less time; requeue and checkpoints carry long runs over several jobs",
        )


def _notify_form(spec: RunSpec) -> None:
    """notify.*: what the config alone can say (whether the webhook's variable or file is there: file_problems)."""
    from ..webhook import FORMATS, reference_problem

    n = spec.notify
    _choice(n.format, FORMATS, "notify.format")
    if n.url is not None:
        problem = reference_problem(n.url)
        if problem:
            raise UserError(problem.message, problem.hint)
    if n.email is not None and not re.match(r"^[^@\s,]+@[^@\s,]+\Z", n.email):
        raise UserError(f"notify.email={n.email!r} is not one mail address", "e.g. notify.email=me@uni.edu")
    if (n.url or n.email) and not for_spec(spec).in_slurm:
        raise UserError(
            "notify needs a Slurm cluster: the local cluster has no summary job and no mail",
            "use cluster=<your slurm cluster>, or leave notify.url/notify.email unset and watch with "
            "danlu status --watch",
        )
    if n.url or n.email:
        parse_time(n.summary_time, "notify.summary_time")


@dataclass
class Verdict:
    """What the checks found for the runs of one request: the same with --dry-run as for a real submit."""

    shapes: List[Shape]
    problems: List[UserError]  # refused (exit 2), dry run or not: the first is the error
    notes: List[str]  # what was and was not checked, one line each

    def refuse(self) -> None:
        if self.problems:
            raise self.problems[0]


def check(specs: Sequence[RunSpec]) -> Verdict:
    """Every run's text and shape (a problem there is raised at once: nothing could be planned), then what the
    files and the program say: missing workdir, program or environment, args the program would refuse."""
    from .lightning import lost_progress_note, world_problem
    from .program_args import verdict

    for s in specs:
        control_characters(s)
    shapes = [shape(s) for s in specs]
    problems: List[UserError] = []
    notes: List[str] = []
    seen: set[str] = set()

    def add(p: UserError) -> None:
        if p.message not in seen:
            seen.add(p.message)
            problems.append(p)

    files: Dict[str, List[UserError]] = {}  # what file_problems reads, as text -> its problems: once per distinct
    for s, sh in zip(specs, shapes, strict=True):
        problem = world_problem(s, sh.nodes, sh.tasks_per_node)
        if problem is not None:
            add(problem)
        key = repr((s.cluster.shared_fs, s.workdir, s.program, s.env, s.notify.url))
        if key not in files:
            files[key] = file_problems(s)
        for p in files[key]:
            add(p)
        found, note = verdict(s)
        for p in found:
            add(p)
        for line in (note, lost_progress_note(s)):
            if line and line not in notes:
                notes.append(line)
    return Verdict(shapes, problems, notes)
