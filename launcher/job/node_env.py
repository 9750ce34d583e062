"""Who this task is in the job, and what its launcher gets: ranks, head node, port, environment, command line."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from ..node_agent import CODE_PATH_VAR, HEAD_ADDR, LOG_DIR, NODE_RANK, PORT, NodeAgent
from .proctree import children


@dataclass(frozen=True)
class TaskIds:
    """This task's place in the job, as Slurm (through submitit's JobEnvironment) tells it."""

    node: int
    nodes: int
    rank: int
    local_rank: int
    ntasks: int


def task_ids() -> TaskIds:
    from submitit import JobEnvironment

    env = JobEnvironment()
    return TaskIds(env.node, env.num_nodes, env.global_rank, env.local_rank, env.num_tasks)


def node_argv(command: str, node: int, head: str, port: int, rank_logs: Path) -> List[str]:
    """$DANLU_COMMAND with the tokens only this node knows filled in."""
    subst = {NODE_RANK: str(node), HEAD_ADDR: head, PORT: str(port), LOG_DIR: str(rank_logs)}
    return [_fill(a, subst) for a in shlex.split(command)]


def _fill(arg: str, subst: Dict[str, str]) -> str:
    for token, value in subst.items():
        if token in arg:
            arg = arg.replace(token, value)
    return arg


def world_size(agent: NodeAgent, ids: TaskIds) -> int:
    """The planned number of ranks of the whole job."""
    return ids.ntasks if agent.launch_kind in ("lightning", "python") else ids.nodes * agent.procs_per_node


def launcher_env(agent: NodeAgent, ids: TaskIds, head: str, port: int) -> Dict[str, str]:
    """The launcher's environment: the job's, with the rendezvous and (for one program per task) the ranks."""
    env = dict(os.environ)
    env.update(MASTER_ADDR=head, MASTER_PORT=str(port), NODE_RANK=str(ids.node), PYTHONUNBUFFERED="1")
    # a hung rank's stacks without a tracer: SIGABRT then makes it print them (job/stacks.py); free while it runs
    env.setdefault("PYTHONFAULTHANDLER", "1")
    frozen = env.get(CODE_PATH_VAR, "")
    if frozen:  # the run's frozen code goes first on the import path, before the live workdir's
        env["PYTHONPATH"] = os.pathsep.join(p for p in (frozen, env.get("PYTHONPATH", "")) if p)
    if not gpu_driver():
        # without it accelerate (>=1.0) on a node without GPUs gives every rank DistributedType.NO: N copies
        env.setdefault("ACCELERATE_USE_CPU", "true")
    if agent.launch_kind in ("lightning", "python"):
        env.update(
            RANK=str(ids.rank),
            WORLD_SIZE=str(ids.ntasks),
            LOCAL_RANK=str(ids.local_rank),
            LOCAL_WORLD_SIZE=str(agent.tasks_per_node),
            GROUP_RANK=str(ids.node),
        )
    return env


def gpu_driver() -> bool:
    """A GPU driver on this node (NVIDIA's lists its GPUs under /proc; ROCm has /dev/kfd)."""
    nvidia = Path("/proc/driver/nvidia/gpus")
    return (nvidia.is_dir() and any(nvidia.iterdir())) or Path("/dev/kfd").exists()


def describe_executable(name: str, path: Optional[str]) -> str:
    """Which file `name` runs (the job's PATH, e.g. an activated envs/NAME/.venv) and, for a script, its interpreter."""
    found = shutil.which(name, path=path)
    if found is None:
        return f"{name} (not found on PATH)"
    try:
        with open(found, "rb") as f:
            first = f.readline(256)
    except OSError:
        return found
    if first.startswith(b"#!"):
        return f"{found} (interpreter {first[2:].decode(errors='replace').strip()})"
    return found


def rank_pids(agent: NodeAgent, child: "subprocess.Popen[bytes]") -> List[int]:
    """The training processes: a per-node launcher's children (torch elastic starts each rank in a session of its
    own), else the program the agent started (one per task). Never the process group: it holds data loader workers,
    which SIGUSR1 would kill."""
    if child.poll() is not None:
        return []
    if agent.per_node_launcher:
        return children(child.pid)
    return [child.pid]
