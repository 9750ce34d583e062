"""`danlu cluster`: where the GPUs are, from ONE `sinfo` and ONE `squeue` call, nothing allocated.

Per partition: GPU type(s), GPUs total / allocated / free / on unavailable (drained, down, not
responding) nodes, the number of pending jobs, and the GPUs the current user's jobs hold.
Parsers are pure functions over the commands' text (tested on output captured from the real
test clusters, tests/captured/<version>/cluster_*).
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Tuple, TypedDict

from .. import slurm

# `-O field:0|`: no padding, '|' after each field (none of these fields can contain a '|').
SINFO_CMD = ["sinfo", "-h", "-N", "-O", "NodeList:0|,Partition:0|,Available:0|,StateLong:0|,Gres:0|,GresUsed:0"]
SQUEUE_CMD = ["squeue", "-h", "-r", "-O", "JobArrayID:0|,UserName:0|,State:0|,Partition:0|,tres-alloc:0"]

# Node states (sinfo StateLong, lower case) whose GPUs cannot be given to new jobs.
UNAVAILABLE = (
    "down",
    "drain",
    "drained",
    "draining",
    "fail",
    "failing",
    "inval",
    "unknown",
    "future",
    "not_responding",
    "reboot_issued",
    "reboot_requested",
    "power_down",
    "powering_down",
    "no_respond",
    "maint",
)
_FLAGS = "*~#!%$@^-+"  # sinfo's one-character state suffixes (e.g. down*, idle~, mixed-)


@dataclass
class NodeRow:
    node: str
    partition: str
    default: bool
    partition_state: str
    state: str
    gres: Dict[str, int]  # GPU type ("" when untyped) -> count
    used: Dict[str, int]

    @property
    def unavailable(self) -> bool:
        return node_unavailable(self.state)


@dataclass
class Counts:
    total: int = 0
    allocated: int = 0
    free: int = 0
    unavailable: int = 0  # GPUs on drained/down nodes that are not allocated

    def add(self, total: int, used: int, down: bool) -> None:
        used = min(used, total)
        self.total += total
        self.allocated += used
        if down:
            self.unavailable += total - used
        else:
            self.free += total - used


@dataclass
class PartitionView:
    partition: str
    default: bool = False
    state: str = "up"
    gpu_types: List[str] = field(default_factory=list)
    nodes: int = 0
    nodes_unavailable: int = 0
    gpus_total: int = 0
    gpus_allocated: int = 0
    gpus_free: int = 0
    gpus_unavailable: int = 0
    pending_jobs: int = 0
    running_jobs: int = 0
    my_gpus: int = 0
    my_jobs: int = 0
    by_type: Dict[str, Dict[str, int]] = field(default_factory=dict)


# ---- parsing -----------------------------------------------------------------------------------
def split_top(text: str, sep: str = ",") -> List[str]:
    """Split on `sep` outside parentheses: 'gpu:a:3(IDX:0-1,3),mps:100' -> ['gpu:a:3(IDX:0-1,3)', 'mps:100']."""
    out: List[str] = []
    cur: List[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p.strip() for p in out if p.strip()]


def parse_gres(text: str) -> Dict[str, int]:
    """GPUs in a sinfo Gres / GresUsed field by type ('' when untyped).

    'gpu:rtx4090:4' -> {'rtx4090': 4}; 'gpu:a10:2(IDX:0-1)' -> {'a10': 2}; 'gpu:4(S:0-1)' -> {'': 4};
    'gpu:a100:2,gpu:v100:1,mps:200' -> {'a100': 2, 'v100': 1}; '(null)' -> {}."""
    gpus: Dict[str, int] = {}
    text = (text or "").strip()
    if not text or text in ("(null)", "N/A"):
        return gpus
    for item in split_top(text):
        item = re.sub(r"\(.*\)$", "", item)  # (IDX:...) / (S:...)
        parts = [p for p in item.split(":") if p not in ("no_consume",)]
        if not parts or parts[0] != "gpu":
            continue
        count_text = parts[-1]
        m = re.match(r"^(\d+)([KMG]?)$", count_text)
        if not m:
            continue
        count = int(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)]
        gtype = ":".join(parts[1:-1])
        if gtype == "(null)":
            gtype = ""
        gpus[gtype] = gpus.get(gtype, 0) + count
    return gpus


def node_unavailable(state: str) -> bool:
    """sinfo StateLong -> True when the node cannot start new jobs (drained, down, not responding...)."""
    s = state.strip().lower()
    if not s:
        return True
    if "*" in s:  # not responding
        return True
    for part in s.strip(_FLAGS).split("+"):
        if part.strip(_FLAGS) in UNAVAILABLE:
            return True
    return False


def parse_sinfo(text: str) -> List[NodeRow]:
    rows: List[NodeRow] = []
    for line in text.splitlines():
        parts = line.rstrip("\n").split("|")
        if len(parts) < 6 or not parts[0].strip():
            continue
        node, part, avail, state, gres, used = (p.strip() for p in parts[:6])
        default = part.endswith("*")
        rows.append(
            NodeRow(
                node=node,
                partition=part.rstrip("*"),
                default=default,
                partition_state=avail,
                state=state,
                gres=parse_gres(gres),
                used=parse_gres(used),
            )
        )
    return rows


@dataclass
class QueueRow:
    job_id: str
    user: str
    state: str
    partitions: List[str]
    gpus: int


def tres_gpus(tres: str) -> int:
    """GPUs in a TRES string: 'cpu=4,node=2,gres/gpu=4,gres/gpu:rtx4090=4' -> 4."""
    total = None
    typed = 0
    for item in split_top(tres or ""):
        key, _, value = item.partition("=")
        if not value.isdigit():
            continue
        if key == "gres/gpu":
            total = int(value)
        elif key.startswith("gres/gpu:"):
            typed += int(value)
    return total if total is not None else typed


def parse_squeue(text: str) -> List[QueueRow]:
    rows: List[QueueRow] = []
    for line in text.splitlines():
        parts = line.rstrip("\n").split("|")
        if len(parts) < 5 or not parts[0].strip():
            continue
        jid, user, state, part, tres = (p.strip() for p in parts[:5])
        rows.append(
            QueueRow(
                job_id=jid,
                user=user,
                state=state.upper(),
                partitions=[p for p in part.split(",") if p],
                gpus=tres_gpus(tres),
            )
        )
    return rows


# ---- the view ----------------------------------------------------------------------------------
def count_nodes(
    nodes: List[NodeRow],
) -> Tuple[Dict[str, PartitionView], Dict[str, Dict[str, Counts]], Dict[str, Counts]]:
    """(partition -> its view with its nodes counted, partition -> GPU type -> its GPUs, GPU type -> its GPUs over
    distinct nodes): a node in several partitions counts in each, and once in the totals."""
    views: Dict[str, PartitionView] = {}
    part_counts: Dict[str, Dict[str, Counts]] = {}
    node_counts: Dict[str, Counts] = {}
    seen_nodes: set[str] = set()
    for n in nodes:
        v = views.setdefault(n.partition, PartitionView(partition=n.partition))
        v.default = v.default or n.default
        v.state = n.partition_state or v.state
        v.nodes += 1
        v.nodes_unavailable += int(n.unavailable)
        pc = part_counts.setdefault(n.partition, {})
        for gtype, total in n.gres.items():
            pc.setdefault(gtype, Counts()).add(total, n.used.get(gtype, 0), n.unavailable)
            if n.node not in seen_nodes:
                node_counts.setdefault(gtype, Counts()).add(total, n.used.get(gtype, 0), n.unavailable)
        seen_nodes.add(n.node)
    return views, part_counts, node_counts


def add_gpus(v: PartitionView, types: Dict[str, Counts]) -> None:
    """A partition's GPUs, by type and in all ('gpu' names the untyped ones)."""
    v.gpu_types = sorted(t or "gpu" for t in types)
    v.by_type = {(t or "gpu"): asdict(c) for t, c in sorted(types.items())}
    v.gpus_total = sum(c.total for c in types.values())
    v.gpus_allocated = sum(c.allocated for c in types.values())
    v.gpus_free = sum(c.free for c in types.values())
    v.gpus_unavailable = sum(c.unavailable for c in types.values())


RUNNING_STATES = ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED")  # squeue's states of a job that holds GPUs


def count_jobs(views: Dict[str, PartitionView], queue: List[QueueRow], user: str) -> None:
    """Each partition's pending and running jobs, and the running jobs and GPUs of `user`."""
    for q in queue:
        for p in q.partitions:
            view = views.get(p)
            if view is None:
                continue
            if q.state == "PENDING":
                view.pending_jobs += 1
            elif q.state in RUNNING_STATES:
                view.running_jobs += 1
                if q.user == user:
                    view.my_jobs += 1
                    view.my_gpus += q.gpus


def summarize(
    nodes: List[NodeRow], queue: List[QueueRow], user: str
) -> Tuple[List[PartitionView], Dict[str, Dict[str, int]]]:
    """Per-partition views (in sinfo's order) and per-GPU-type totals over distinct nodes."""
    views, part_counts, node_counts = count_nodes(nodes)
    for name, v in views.items():
        add_gpus(v, part_counts.get(name, {}))
    count_jobs(views, queue, user)
    totals = {(t or "gpu"): asdict(c) for t, c in sorted(node_counts.items())}
    ordered = sorted(views.values(), key=lambda v: (not v.default, v.partition.lower()))  # default first
    return ordered, totals


def current_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER", "")


class ClusterData(TypedDict):
    """What `danlu cluster` shows (and prints with --json)."""

    user: str
    partitions: List[Dict[str, Any]]  # asdict(PartitionView) of each, the default first
    gpu_types: Dict[str, Dict[str, int]]  # GPU type -> asdict(Counts), over distinct nodes


def collect() -> ClusterData:
    """One sinfo + one squeue call -> {'user', 'partitions': [...], 'gpu_types': {...}}."""
    nodes = parse_sinfo(slurm.run(SINFO_CMD))
    queue = parse_squeue(slurm.run(SQUEUE_CMD))
    user = current_user()
    views, totals = summarize(nodes, queue, user)
    return {"user": user, "partitions": [asdict(v) for v in views], "gpu_types": totals}


# ---- presentation ------------------------------------------------------------------------------
HEADERS = ["PARTITION", "GPU", "TOTAL", "ALLOC", "FREE", "DOWN", "NODES", "PENDING", "MINE"]


def table_rows(data: ClusterData) -> List[List[str]]:
    rows = []
    for p in data["partitions"]:
        name = p["partition"] + ("*" if p["default"] else "")
        if p["state"] and p["state"] != "up":
            name += f" ({p['state']})"
        nodes = str(p["nodes"]) + (f" ({p['nodes_unavailable']} down)" if p["nodes_unavailable"] else "")
        rows.append(
            [
                name,
                ",".join(p["gpu_types"]) or "-",
                str(p["gpus_total"]),
                str(p["gpus_allocated"]),
                str(p["gpus_free"]),
                str(p["gpus_unavailable"]),
                nodes,
                str(p["pending_jobs"]),
                str(p["my_gpus"]),
            ]
        )
    return rows


def summary_line(data: ClusterData) -> str:
    types = data["gpu_types"]
    if not types:
        return "no GPUs on this cluster"
    parts = [f"{c['total']} {t} ({c['free']} free)" for t, c in types.items()]
    return "GPUs: " + ", ".join(parts)


def render_plain(data: ClusterData) -> str:
    rows = table_rows(data)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(HEADERS)]
    right = {2, 3, 4, 5, 7, 8}

    def fmt(cells: List[str]) -> str:
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return "\n".join([fmt(HEADERS)] + [fmt(r) for r in rows] + [summary_line(data)])


def render_rich(data: ClusterData) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for i, h in enumerate(HEADERS):
        table.add_column(h, justify="right" if i in (2, 3, 4, 5, 7, 8) else "left")
    for r, p in zip(table_rows(data), data["partitions"], strict=True):  # a row per partition
        table.add_row(
            Text(r[0], style="bold"),
            r[1],
            r[2],
            r[3],
            Text(r[4], style="green" if p["gpus_free"] else "dim"),
            Text(r[5], style="red" if p["gpus_unavailable"] else "dim"),
            r[6],
            Text(r[7], style="yellow" if p["pending_jobs"] else "dim"),
            Text(r[8], style="cyan" if p["my_gpus"] else "dim"),
        )
    console = Console()
    console.print(table)
    console.print(summary_line(data), style="dim")
