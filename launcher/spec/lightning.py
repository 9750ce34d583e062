"""A LightningCLI program's own view of its world, checked against the job before it is queued.

With `launch=lightning` Slurm starts one task per rank and Lightning builds its world from `trainer.devices`
(ranks per node) and `trainer.num_nodes`. Lightning refuses a mismatch only once the job runs — after the queue —
and with `devices: 1` on every task of a CPU job it may even train as independent copies. The values are read as
LightningCLI reads them: the `--config` file(s) in order (relative to the workdir), then `args.trainer.*`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import UserError
from ..words import counted
from .options import RunSpec


def _config_paths(spec: RunSpec) -> List[Path]:
    value = spec.args.get("config")
    if value is None or value is False:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    workdir = Path(spec.workdir).expanduser()
    return [(workdir / Path(str(v)).expanduser()) for v in items]


def _trainer_values(spec: RunSpec) -> Tuple[Dict[str, Any], List[str]]:
    """trainer.devices / trainer.num_nodes as the program will see them, and where each came from."""
    import yaml

    found: Dict[str, Any] = {}
    origin: Dict[str, str] = {}
    for path in _config_paths(spec):
        if not path.is_file():
            continue  # a missing file is the workdir/program check's business
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        trainer = data.get("trainer") if isinstance(data, dict) else None
        if isinstance(trainer, dict):
            for key in ("devices", "num_nodes"):
                if key in trainer:
                    found[key], origin[key] = trainer[key], path.name
    trainer_args = spec.args.get("trainer")
    for key in ("devices", "num_nodes"):
        if isinstance(trainer_args, dict) and trainer_args.get(key) is not None:
            found[key], origin[key] = trainer_args[key], "args"
        if spec.args.get(f"trainer.{key}") is not None:
            found[key], origin[key] = spec.args[f"trainer.{key}"], "args"
    return found, [f"trainer.{k}={found[k]} ({origin[k]})" for k in ("devices", "num_nodes") if k in found]


def _count(value: Any) -> Optional[int]:
    """Ranks per node that a `devices` value asks for; None where Lightning decides at run time ("auto", -1)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, (list, tuple)):
        return len(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        if "," in text:
            return len([v for v in text.split(",") if v.strip()])
    return None


def world_problem(spec: RunSpec, nodes: int, tasks_per_node: int) -> Optional[UserError]:
    """A UserError if the LightningCLI config's trainer.devices x trainer.num_nodes disagree with the job."""
    if spec.launch.kind != "lightning":
        return None
    values, said = _trainer_values(spec)
    if not values:
        return None
    devices = _count(values.get("devices"))
    num_nodes = _count(values.get("num_nodes", 1))
    if (devices is None or devices == tasks_per_node) and (num_nodes is None or num_nodes == nodes):
        return None
    return UserError(
        f"the Lightning program would start {devices or '?'} x {num_nodes or '?'} ranks ({', '.join(said)}) but the "
        f"job has {counted(nodes, 'node')} x {counted(tasks_per_node, 'task')}",
        f"set args.trainer.devices={tasks_per_node} args.trainer.num_nodes={nodes}, or change resources.nodes / "
        f"resources.gpus_per_node (launch=lightning starts one task per GPU)",
    )
