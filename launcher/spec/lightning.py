"""A LightningCLI program's own view of its world, checked against the job before it is queued.

With `launch=lightning` Slurm starts one task per rank and Lightning builds its world from `trainer.devices`
(ranks per node) and `trainer.num_nodes`. Lightning refuses a mismatch only once the job runs — after the queue —
and with `devices: 1` on every task of a CPU job it may even train as independent copies. The values are read as
LightningCLI reads them: the `--config` file(s) in order (relative to the workdir), then `args.trainer.*`.

Read the same way, `output_folders` says where a run writes (checkpoint and log folders, default_root_dir), so that
two runs writing into one folder are refused before the queue (submit/outputs.py).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import UserError
from ..words import counted
from .options import RunSpec


def _config_paths(spec: RunSpec) -> List[Path]:
    return _paths(spec.args, spec.workdir)


def _paths(args: Mapping[str, Any], workdir: str) -> List[Path]:
    """The `--config` files of `args`, in order, relative to the workdir."""
    value = args.get("config")
    if value is None or value is False:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    where = Path(workdir).expanduser()
    return [(where / Path(str(v)).expanduser()) for v in items]


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


# ---- where a LightningCLI run writes ------------------------------------------------------------------------------
_LOADED: Dict[Tuple[str, int, int], Any] = {}  # a --config file's YAML, read once per version of the file


@dataclass(frozen=True)
class Folder:
    """A folder a LightningCLI run writes into, as its config names it."""

    path: str  # absolute, normalized (resolved against the workdir)
    what: str  # the setting that names it, e.g. "ModelCheckpoint dirpath"
    key: Optional[str]  # the args key that changes it for one run; None where only a config file can
    versioned: bool = False  # a logger without `version`: each start writes a new version_N below `path`


def _load(path: Path) -> Any:
    import yaml

    try:
        st = path.stat()
    except OSError:
        return None  # a missing file is the workdir/program check's business
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _LOADED:
        try:
            _LOADED[key] = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            _LOADED[key] = None
    return _LOADED[key]


def _merge(base: Dict[str, Any], new: Mapping[str, Any]) -> Dict[str, Any]:
    """jsonargparse's merge of a later --config: mappings merge key by key, any other value (a list too) replaces."""
    out = dict(base)
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _dotted(args: Mapping[str, Any], prefix: str = "") -> List[Tuple[str, Any]]:
    """args as the command line has them (plan/command.py): dotted keys; null and false are not passed."""
    out: List[Tuple[str, Any]] = []
    for k, v in args.items():
        if isinstance(v, Mapping) and v:
            out.extend(_dotted(v, f"{prefix}{k}."))
        elif v is not None and v is not False:
            out.append((f"{prefix}{k}", v))
    return out


def _set(tree: Dict[str, Any], parts: List[str], value: Any) -> None:
    """`--a.b.c=value` as jsonargparse applies it: into a list (of callbacks, loggers) it sets the last item; into a
    `class_path` mapping, its init_args."""
    node = tree
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if isinstance(nxt, list):
            if not nxt or not isinstance(nxt[-1], dict):
                return
            nxt = nxt[-1]
        elif not isinstance(nxt, dict):
            nxt = node[part] = {}
        if "class_path" in nxt and parts[i + 1] not in ("class_path", "init_args", "dict_kwargs"):
            inner = nxt.get("init_args")
            nxt = inner if isinstance(inner, dict) else nxt.setdefault("init_args", {})
        node = nxt
    node[parts[-1]] = value


def merged_config(args: Mapping[str, Any], workdir: str) -> Dict[str, Any]:
    """The program's config as LightningCLI merges it: the --config files in order, then the other args."""
    merged: Dict[str, Any] = {}
    for path in _paths(args, workdir):
        data = _load(path)
        if isinstance(data, Mapping):
            merged = _merge(merged, data)
    for key, value in _dotted({k: v for k, v in args.items() if k != "config"}):
        _set(merged, key.split("."), copy.deepcopy(value))
    return merged


def _items(value: Any) -> List[Tuple[Dict[str, Any], bool]]:
    """The class_path mappings of a callbacks/logger value, each with whether it is the last (what a command-line
    key sets)."""
    items = value if isinstance(value, list) else [value]
    return [(v, k == len(items) - 1) for k, v in enumerate(items) if isinstance(v, dict)]


def _is(item: Dict[str, Any], *names: str) -> bool:
    return str(item.get("class_path") or "").rsplit(".", 1)[-1] in names


def output_folders(args: Mapping[str, Any], workdir: str) -> List[Folder]:
    """Where a LightningCLI run writes, as its merged config names it: trainer.default_root_dir, every ModelCheckpoint
    callback's dirpath, every TensorBoardLogger/CSVLogger's save_dir/name/version; relative paths are the workdir's.
    What the config leaves to Lightning (no dirpath, no default_root_dir) is not listed."""
    if "config" not in args and not any(k == "trainer" or str(k).startswith("trainer.") for k in args):
        return []  # not a LightningCLI command line (a sweep of 10,000 such runs: nothing read)
    trainer = merged_config(args, workdir).get("trainer")
    if not isinstance(trainer, dict):
        return []
    base = str(Path(workdir).expanduser().resolve())
    found: List[Folder] = []
    root = trainer.get("default_root_dir")
    if isinstance(root, str) and root:
        found.append(Folder(_where(base, root), "trainer.default_root_dir", "args.trainer.default_root_dir"))
    return found + _checkpoint_folders(trainer, base) + _logger_folders(trainer, base)


def _where(base: str, *parts: Any) -> str:
    """A folder's real path, relative parts below `base`: two spellings of one folder (a symlink, `./`, `..`) are one
    folder."""
    return os.path.realpath(os.path.join(base, *(os.path.expanduser(str(p)) for p in parts)))


def _checkpoint_folders(trainer: Dict[str, Any], base: str) -> List[Folder]:
    """The dirpath of every ModelCheckpoint callback that names one."""
    found: List[Folder] = []
    for item, last in _items(trainer.get("callbacks")):
        dirpath = (item.get("init_args") or {}).get("dirpath")
        if _is(item, "ModelCheckpoint") and isinstance(dirpath, str) and dirpath:
            key = "args.trainer.callbacks.init_args.dirpath" if last else None
            found.append(Folder(_where(base, dirpath), "ModelCheckpoint dirpath", key))
    return found


def _logger_folders(trainer: Dict[str, Any], base: str) -> List[Folder]:
    """The save_dir/name of every TensorBoardLogger and CSVLogger with a save_dir; its version folder where the
    config fixes the version."""
    found: List[Folder] = []
    for item, last in _items(trainer.get("logger")):
        init = item.get("init_args") or {}
        kind = str(item.get("class_path") or "").rsplit(".", 1)[-1]
        if not _is(item, "TensorBoardLogger", "CSVLogger") or not init.get("save_dir"):
            continue
        name = init.get("name", "lightning_logs")
        folder = _where(base, init["save_dir"], *([name] if name else []))
        version = init.get("version")
        key = "args.trainer.logger.init_args.version" if last else None
        if version is None or version == "":
            found.append(Folder(folder, f"{kind} save_dir/name", key, versioned=True))
        else:
            sub = f"version_{version}" if isinstance(version, int) else str(version)
            found.append(Folder(_where(base, folder, sub), f"{kind} save_dir/name/version", key))
    return found


# ---- the extra --config of a LightningCLI run -----------------------------------------------------------------------
KEEP_PROGRESS = "danlu_lightning.KeepProgress"  # launcher/job/lightning_plugin/danlu_lightning.py


def _lightning_cli_fit(launch_kind: Any, program_args: Any) -> bool:
    return launch_kind == "lightning" and isinstance(program_args, list) and program_args[:1] == ["fit"]


def keeps_progress(spec: RunSpec) -> bool:
    """Does danlu keep this run's progress itself: a LightningCLI program (`fit` subcommand, one task per rank) that
    restores only a `ckpt_path` it is given. Its state is saved at a stop signal and given back at the next start."""
    return _lightning_cli_fit(spec.launch.kind, [str(a) for a in spec.program_args])


def has_own_folders(config: Mapping[str, Any]) -> bool:
    """Are a stored run's (its config as JSON) LightningCLI folders below its own output dir (extra_config)?"""
    launch = config.get("launch")
    kind = launch.get("kind") if isinstance(launch, Mapping) else None
    return bool(config.get("own_folders")) and _lightning_cli_fit(kind, config.get("program_args"))


def _own_path(path: str, workdir: str, output_dir: str) -> str:
    """Where a folder the config names (relative to the workdir, or absolute) goes below the run's output dir: its
    path relative to the workdir, without leading `..` (`../ckpt/x` -> `<output>/ckpt/x`)."""
    base = os.path.normpath(str(Path(workdir).expanduser()))
    full = os.path.normpath(os.path.join(base, os.path.expanduser(str(path))))
    parts = [p for p in Path(os.path.relpath(full, base)).parts if p not in ("..", ".")]
    return os.path.join(output_dir, *parts)


def _own_logger(item: Dict[str, Any], workdir: str, output_dir: str) -> Dict[str, Any]:
    init = item.get("init_args")
    if not _is(item, "TensorBoardLogger", "CSVLogger") or not isinstance(init, dict):
        return item
    return dict(item, init_args=dict(init, save_dir=_own_path(str(init.get("save_dir") or "."), workdir, output_dir)))


def _checkpoint_with_dirpath(item: Any) -> bool:
    init = item.get("init_args") if isinstance(item, dict) else None
    return isinstance(init, dict) and _is(item, "ModelCheckpoint") and bool(init.get("dirpath"))


def extra_config(spec: RunSpec, workdir: str, output_dir: str, stop_checkpoint: str) -> Dict[str, Any]:
    """The `--config` danlu writes after the program's own (jsonargparse: a later list replaces the earlier one, a
    mapping merges key by key): danlu's callback first in `trainer.callbacks`, so that a command-line key for the
    last callback still reaches the program's own; with `own_folders`, every ModelCheckpoint dirpath, logger
    save_dir and the default_root_dir moved below the run's output dir, the user's layout kept there."""
    trainer = merged_config(spec.args, workdir).get("trainer")
    trainer = trainer if isinstance(trainer, dict) else {}
    callbacks = trainer.get("callbacks")
    items = [c for c in (callbacks if isinstance(callbacks, list) else [callbacks]) if c is not None]
    out: Dict[str, Any] = {}
    if spec.own_folders:
        root = trainer.get("default_root_dir")
        out["default_root_dir"] = _own_path(str(root) if root else ".", workdir, output_dir)
        items = [
            dict(c, init_args=dict(c["init_args"], dirpath=_own_path(c["init_args"]["dirpath"], workdir, output_dir)))
            if _checkpoint_with_dirpath(c)
            else c
            for c in items
        ]
        logger = trainer.get("logger")
        if isinstance(logger, list):
            out["logger"] = [_own_logger(x, workdir, output_dir) if isinstance(x, dict) else x for x in logger]
        elif isinstance(logger, dict):
            out["logger"] = _own_logger(logger, workdir, output_dir)
    base = str(Path(workdir).expanduser())
    resume = [  # where the agent looks for the program's own last*.ckpt
        os.path.normpath(os.path.join(base, os.path.expanduser(str(c["init_args"]["dirpath"]))))
        for c in items
        if _checkpoint_with_dirpath(c)
    ]
    keep = {"class_path": KEEP_PROGRESS, "init_args": {"checkpoint": stop_checkpoint, "resume_dirs": resume}}
    out["callbacks"] = [keep] + items
    return {"trainer": out}


def extra_config_text(config: Mapping[str, Any]) -> str:
    import yaml

    return (
        "# written by danlu after the program's own --config files: danlu's callback saves the trainer at a stop\n"
        "# signal (resumed at the next start); with own_folders, each run's checkpoint and log folders\n"
        "# are below its output dir (submit --reuse-output keeps them where the config names them)\n"
        + yaml.safe_dump(dict(config), sort_keys=False)
    )


def lost_progress_note(spec: RunSpec) -> str:
    """A line for a run whose progress no requeue can keep ('' when it can, or when it is never requeued): neither a
    LightningCLI `fit` (danlu keeps it) nor a program with an output dir it resumes from (output_arg)."""
    if not spec.requeue.enabled or keeps_progress(spec) or spec.output_arg:
        return ""
    return (
        f"progress not kept: {spec.program or 'the program'} names no output dir danlu knows (output_arg) and is no "
        f"LightningCLI fit; a requeue (time limit, preemption) restarts it from step 0 unless it resumes by itself"
    )
