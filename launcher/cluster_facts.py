"""What the live cluster says about itself, read with a few Slurm commands on the login node: its version and
limits (`scontrol show config`), partitions (`scontrol show partition`), nodes with their CPUs, memory and GPUs as
the site names them (`sinfo`), and the user's association limits (`sacctmgr`, where it answers).

`danlu cluster init NAME` writes a cluster profile (jobs/cluster/NAME.yaml) from these facts, so that nobody has
to copy numbers out of `sinfo` by hand and GPU type names match gres.conf exactly.
"""

from __future__ import annotations

import getpass
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from . import slurm
from .words import counted

SINFO_NODES = ["sinfo", "-h", "-N", "-O", "NodeList:0|,Partition:0|,CPUs:0|,Memory:0|,Gres:0|"]


@dataclass
class PartitionFacts:
    name: str
    nodes: List[str] = field(default_factory=list)
    default: bool = False
    max_time: Optional[str] = None  # Slurm's format; None for UNLIMITED
    grace_time: int = 0
    cpus_per_node: int = 0  # the smallest node's, so that what fits one node fits every node
    mem_per_node_mb: int = 0
    gpus_per_node: int = 0
    gpu_type: Optional[str] = None  # the most common type, as gres.conf names it
    other_gpu_types: List[str] = field(default_factory=list)
    # the largest node's, so that what fits no node is known: its CPUs, memory, and GPUs by type ('' for any type);
    # most_gpus is {} where the nodes were not read (facts cached by an older danlu)
    most_cpus: int = 0
    most_mem_mb: int = 0
    most_gpus: Dict[str, int] = field(default_factory=dict)


@dataclass
class ClusterFacts:
    version: str
    max_array_size: Optional[int]
    max_job_count: Optional[int]
    kill_wait: Optional[int]
    partitions: Dict[str, PartitionFacts]
    limits: Dict[str, Optional[int]]  # the user's association: max_submit_jobs, max_jobs (None: no limit)
    read_at: float = field(default_factory=time.time)
    grp_tres: Dict[str, int] = field(default_factory=dict)  # the association's GrpTRES: cpu, gres/gpu, gres/gpu:TYPE
    # AccountingStoreFlags has job_env: the accounting database keeps each job's environment (sacct --env-vars)
    stores_job_env: bool = False


def parse_config(text: str) -> Dict[str, str]:
    """`scontrol show config` -> {key: value}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\S+)\s+=\s?(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def parse_partitions(text: str) -> Dict[str, PartitionFacts]:
    """`scontrol show partition -o`: one record per line of Key=Value (values without spaces in these keys)."""
    parts = {}
    for line in text.splitlines():
        kv = dict(re.findall(r"(?:^|\s)(\w+)=(\S*)", line))
        name = kv.get("PartitionName")
        if not name:
            continue
        max_time = kv.get("MaxTime", "UNLIMITED")
        grace = slurm.duration_seconds(kv.get("GraceTime", "0")) or 0
        parts[name] = PartitionFacts(
            name=name,
            nodes=slurm.expand_hostlist(kv.get("Nodes", "")),
            default=kv.get("Default") == "YES",
            max_time=None if max_time in ("UNLIMITED", "INFINITE", "") else max_time,
            grace_time=grace,
        )
    return parts


NodeSize = Tuple[int, int, Dict[str, int]]  # a node's CPUs, memory (MB) and GPUs per type


def node_sizes(sinfo_text: str) -> Dict[str, NodeSize]:
    """Each node's CPUs, memory and GPUs from `sinfo -N` (SINFO_NODES); a number sinfo leaves out counts 0."""
    from .views.cluster import parse_gres

    nodes: Dict[str, NodeSize] = {}
    for line in sinfo_text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 5 or not cells[0]:
            continue
        cpus = int(cells[2]) if cells[2].isdigit() else 0
        mem = int(cells[3]) if cells[3].isdigit() else 0
        nodes[cells[0]] = (cpus, mem, parse_gres(cells[4]))
    return nodes


def size_partition(p: PartitionFacts, mine: List[NodeSize]) -> None:
    """A partition's sizes from its nodes': the smallest node's, the largest's, and its GPU types (the most common
    first)."""
    p.cpus_per_node = min(c for c, _, _ in mine)
    p.mem_per_node_mb = min(m for _, m, _ in mine)
    p.gpus_per_node = min(sum(g.values()) for _, _, g in mine)
    types = Counter(t for _, _, g in mine for t, n in g.items() if t and n)
    if types:
        p.gpu_type = types.most_common(1)[0][0]
        p.other_gpu_types = sorted(set(types) - {p.gpu_type})
    p.most_cpus = max(c for c, _, _ in mine)
    p.most_mem_mb = max(m for _, m, _ in mine)
    p.most_gpus = {"": max(sum(g.values()) for _, _, g in mine)}
    p.most_gpus.update({t: max(g.get(t, 0) for _, _, g in mine) for t in types})


def add_nodes(parts: Dict[str, PartitionFacts], sinfo_text: str) -> None:
    """CPUs, memory and GPUs of each partition's nodes from `sinfo -N` (SINFO_NODES)."""
    nodes = node_sizes(sinfo_text)
    for p in parts.values():
        mine = [nodes[n] for n in p.nodes if n in nodes]
        if mine:
            size_partition(p, mine)


ASSOC_FORMAT = "format=MaxSubmitJobs,MaxJobs,GrpTRES"


def parse_assoc(text: str) -> Tuple[Dict[str, Optional[int]], Dict[str, int]]:
    """`sacctmgr -n -P show assoc user=U format=MaxSubmitJobs,MaxJobs,GrpTRES`: the tightest of the user's
    associations, (job limits, GrpTRES as {'cpu': 64, 'gres/gpu': 8, 'gres/gpu:a100': 4, ...})."""
    limits: Dict[str, Optional[int]] = {"max_submit_jobs": None, "max_jobs": None}
    tres: Dict[str, int] = {}
    for line in text.splitlines():
        cells = line.split("|")
        for key, cell in zip(("max_submit_jobs", "max_jobs"), cells, strict=False):  # then GrpTRES, or no more
            if cell.strip().isdigit():
                value, tightest = int(cell), limits[key]
                limits[key] = value if tightest is None else min(tightest, value)
        for item in (cells[2] if len(cells) > 2 else "").split(","):
            name, _, count = item.strip().partition("=")
            if name and count.isdigit():
                tres[name] = min(tres.get(name, int(count)), int(count))
    return limits, tres


def grp_tres_problem(tres: Dict[str, int], gpus: int, gpu_type: Optional[str], cpus: int) -> Optional[str]:
    """Why one job of `gpus` GPUs (of `gpu_type`) and `cpus` CPUs can never start under the association's GrpTRES
    (it would pend for ever, reason AssocGrpGRES / AssocGrpCpuLimit); None when it fits."""
    asks = [("gres/gpu", gpus, counted(gpus, "GPU")), ("cpu", cpus, counted(cpus, "CPU"))]
    if gpu_type:
        asks.insert(1, (f"gres/gpu:{gpu_type}", gpus, counted(gpus, f"{gpu_type} GPU")))
    for name, n, what in asks:
        if name in tres and n > tres[name]:
            return f"one job asks for {what}; your association's GrpTRES allows {name}={tres[name]} at once"
    return None


def stop_graces(
    places: Iterable[Tuple[Optional[str], Optional[str]]], facts: Optional[ClusterFacts]
) -> Dict[Tuple[Optional[str], Optional[str]], Optional[int]]:
    """The stop grace of each (partition, qos) place of a submit or rerun (slurm.stop_grace), from the cached facts
    (KillWait, the partitions' GraceTime) where they say it all: no scontrol call then. A QOS's GraceTime is not
    among the facts: it is asked of Slurm (slurm.ask_stop_graces)."""
    distinct = set(places)
    if facts is None or facts.kill_wait is None or any(q or (p and p not in facts.partitions) for p, q in distinct):
        return slurm.ask_stop_graces(distinct) if distinct else {}
    return {(p, q): max(facts.kill_wait, facts.partitions[p].grace_time if p else 0) for p, q in distinct}


def read() -> ClusterFacts:
    """The facts of the cluster this login node talks to (four commands; sacctmgr may be refused: no limits)."""
    config = parse_config(slurm.run(["scontrol", "show", "config"]))
    parts = parse_partitions(slurm.run(["scontrol", "show", "partition", "-o"]))
    add_nodes(parts, slurm.run(SINFO_NODES))
    try:
        limits, tres = parse_assoc(
            slurm.run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={getpass.getuser()}", ASSOC_FORMAT])
        )
    except slurm.SlurmUnavailable:
        limits, tres = {"max_submit_jobs": None, "max_jobs": None}, {}

    def number(key: str) -> Optional[int]:
        value = config.get(key, "").split()[0] if config.get(key) else ""
        return int(value) if value.isdigit() else None

    return ClusterFacts(
        version=config.get("SLURM_VERSION", "?"),
        max_array_size=number("MaxArraySize"),
        max_job_count=number("MaxJobCount"),
        kill_wait=number("KillWait"),
        partitions=parts,
        limits=limits,
        grp_tres=tres,
        stores_job_env="job_env" in config.get("AccountingStoreFlags", "").split(","),
    )


def profile_yaml(name: str, facts: ClusterFacts) -> str:
    """A cluster profile (jobs/cluster/NAME.yaml) from the facts, with comments saying where each value came from."""
    q = json.dumps  # JSON strings are YAML strings: any partition or GPU type name stays one scalar
    default = next((p.name for p in facts.partitions.values() if p.default), next(iter(facts.partitions), None))
    lines = [
        f"# Written by `danlu cluster init {name}` from the live cluster (Slurm {facts.version}) on "
        f"{time.strftime('%Y-%m-%d', time.localtime(facts.read_at))}.",
        f"# Read it again with `danlu cluster init {name} --force`; edit what the cluster cannot say "
        "(shared_fs, account, qos).",
        f"name: {q(name)}",
        "kind: slurm",
        "shared_fs: true              # home/project dirs are mounted on the compute nodes (not checked here)",
        f"default_partition: {q(default) if default else 'null'}",
        f"max_array_size: {facts.max_array_size or 1001}"
        + ("          # MaxArraySize (scontrol show config)" if facts.max_array_size else "  # not readable"),
        "gres_with_type: true         # --gres=gpu:TYPE:N with the types as gres.conf names them",
        "account: null",
        "qos: null",
        "partitions:",
    ]
    for p in facts.partitions.values():
        entry = {
            "nodes": len(p.nodes),
            "gpus_per_node": p.gpus_per_node,
            "gpu_type": p.gpu_type,
            "cpus_per_node": p.cpus_per_node,
            "mem_per_node": f"{p.mem_per_node_mb}M" if p.mem_per_node_mb else None,
            "max_time": p.max_time,
        }
        body = ", ".join(
            f"{k}: {q(v) if isinstance(v, str) else ('null' if v is None else v)}" for k, v in entry.items()
        )
        shown = " ".join(p.nodes[:4]) + (f" ... ({len(p.nodes)} nodes)" if len(p.nodes) > 4 else "")
        notes = [shown or "no nodes", f"GraceTime {p.grace_time} s"] + (
            [f"also GPUs of type {', '.join(p.other_gpu_types)}"] if p.other_gpu_types else []
        )
        lines.append(f"  {q(p.name)}: {{{body}}}  # {'; '.join(notes)}")
    limits = ", ".join(
        f"{k}={v}"
        for k, v in (
            ("MaxJobCount", facts.max_job_count),
            ("KillWait", facts.kill_wait),
            ("your MaxSubmitJobs", facts.limits.get("max_submit_jobs")),
            ("your MaxJobs", facts.limits.get("max_jobs")),
            ("your GrpTRES", ",".join(f"{k}={v}" for k, v in sorted(facts.grp_tres.items())) or None),
        )
        if v is not None
    )
    lines += ["runs_dir: \"${oc.env:DANLU_RUNS_DIR,'~/danlu-runs'}\"", f"# limits read: {limits or 'none'}"]
    return "\n".join(lines) + "\n"


# ---- cached per cluster, and checked against the profile at submit -------------------------------------------
TTL_S = 3600.0  # facts older than this are read again (`danlu submit --refresh-cluster` at once)


def _cache_file(cluster: str) -> Path:
    from .paths import data_home

    return data_home() / "clusters" / f"{cluster}.json"


def _from_json(data: Dict[str, Any]) -> ClusterFacts:
    parts = {k: PartitionFacts(**v) for k, v in data["partitions"].items()}
    return ClusterFacts(**{**data, "partitions": parts})


def cached(cluster: str, refresh: bool = False, ttl: float = TTL_S, keep: bool = True) -> Optional[ClusterFacts]:
    """The live cluster's facts, read at most once per `ttl` for the cluster profile `cluster` (kept under the
    data home unless not `keep`: a dry run writes nothing); the last ones read when Slurm does not answer now;
    None when there are none."""
    import dataclasses

    path = _cache_file(cluster)
    old: Optional[ClusterFacts] = None
    try:
        old = _from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if old is not None and not refresh and 0 <= time.time() - old.read_at < ttl:
        return old
    try:
        fresh = read()
    except slurm.SlurmUnavailable:
        return old
    if not keep:
        return fresh
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{time.time_ns()}")
    tmp.write_text(json.dumps(dataclasses.asdict(fresh)))
    tmp.replace(path)
    return fresh


def _mb(text: Optional[str]) -> Optional[int]:
    """'64000M', '250G', '1T', '512' (MB) -> MB."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)B?\s*", text or "", re.I)
    if not m:
        return None
    scale = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2).upper()]
    return int(int(m.group(1)) * scale)


def contradictions(profile: object, facts: ClusterFacts, used: Sequence[str]) -> List[str]:
    """Where the cluster profile (ClusterSpec) says other than the live cluster, for the partitions `used`:
    one line each, naming both values (the profile may still override: these are warnings)."""
    name = getattr(profile, "name", "?")
    out: List[str] = []
    size = getattr(profile, "max_array_size", None)
    if facts.max_array_size and size and size > facts.max_array_size:
        out.append(
            f"cluster {name}: max_array_size is {size} in the profile but MaxArraySize is "
            f"{facts.max_array_size} on the live cluster; arrays are split at {facts.max_array_size}"
        )
    partitions = getattr(profile, "partitions", {}) or {}
    for part in dict.fromkeys(used):
        mine, live = partitions.get(part), facts.partitions.get(part)
        if live is None:
            out.append(
                f"cluster {name}: partition {part!r} is not on the live cluster (it has "
                f"{', '.join(facts.partitions) or 'none'}); `danlu cluster init {name} --force` reads it again"
            )
            continue
        if mine is None:
            continue
        pairs: List[Tuple[str, object, object]] = [  # (key, the profile's value, the live cluster's)
            ("nodes", mine.nodes, len(live.nodes)),
            ("gpus_per_node", mine.gpus_per_node, live.gpus_per_node),
            ("cpus_per_node", mine.cpus_per_node, live.cpus_per_node),
        ]
        if (
            mine.gpu_type
            and live.gpu_type
            and mine.gpu_type != live.gpu_type
            and mine.gpu_type not in live.other_gpu_types
        ):
            pairs.append(("gpu_type", mine.gpu_type, f"{live.gpu_type} (as gres.conf names it)"))
        if _mb(mine.mem_per_node) and live.mem_per_node_mb and _mb(mine.mem_per_node) != live.mem_per_node_mb:
            pairs.append(("mem_per_node", mine.mem_per_node, f"{live.mem_per_node_mb}M"))
        for key, said, real in pairs:
            if said != real:
                out.append(
                    f"cluster {name}: partition {part}: {key} is {said} in the profile, {real} on the live cluster"
                )
    return out


def submit_limit(facts: ClusterFacts, qos: Optional[str], new_jobs: int) -> Optional[str]:
    """Why `new_jobs` more jobs (each array task counts) would go over the user's submit limit: the association's
    MaxSubmitJobs (over all of the user's jobs Slurm holds now) or the QOS's MaxSubmitJobsPerUser (over the user's
    jobs in that QOS), or the controller's MaxJobCount (over everyone's, for a sweep of a quarter of it or more);
    None when they fit, or when no limit is known."""
    checks: List[Tuple[Optional[int], str, List[str]]] = [  # (limit, whose, squeue's options to count against it)
        (facts.limits.get("max_submit_jobs"), "your association's MaxSubmitJobs", [])
    ]
    if qos:
        try:
            cells = slurm.run(["sacctmgr", "-n", "-P", "show", "qos", qos, "format=MaxSubmitJobsPU"]).split()
            if cells and cells[0].isdigit():
                checks.append((int(cells[0]), f"the MaxSubmitJobsPerUser of QOS {qos}", [f"--qos={qos}"]))
        except slurm.SlurmUnavailable:
            pass
    if facts.max_job_count:  # the controller's limit on the jobs it holds, of all users
        checks.append((facts.max_job_count, "the cluster's MaxJobCount (all users' jobs)", ["--all"]))
    for limit, why, where in checks:
        if limit is None:
            continue
        if new_jobs > limit:
            return f"{counted(new_jobs, 'new job')} (each run is one, array tasks too) exceed {why}, {limit}"
        if "--all" in where and new_jobs * 4 <= limit:
            continue  # everyone's jobs are counted (one squeue of the whole queue) only for a sweep that big
        try:
            mine = [] if "--all" in where else ["--me"]
            held = len(slurm.run(["squeue", *mine, "-h", "-r", *where, "-o", "%i"]).split())
        except slurm.SlurmUnavailable:
            held = 0
        if held + new_jobs > limit:
            whose = "in the queue" if "--all" in where else "of yours already queued"
            return (
                f"{counted(new_jobs, 'new job')} (each run is one, array tasks too) and {held} {whose} exceed {why}, "
                f"{limit}"
            )
    return None
