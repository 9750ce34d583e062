"""Who owns an output dir. A run's checkpoints live in its output dir, kept across its attempts so that a restart
resumes; a new run pointed at another run's output dir (args.output_dir=...) would resume from, and overwrite,
that run's checkpoints without a word. It is refused unless asked for; training a finished run further is
`danlu rerun RUN --continue`, a new attempt of that run.

A LightningCLI program names its own folders in its config (a ModelCheckpoint dirpath, a logger's save_dir and
version): two runs of one sweep writing into one of them, or a run writing into one that a queued or running run of
the store writes into, overwrite each other's checkpoints and logs; refused too, unless --reuse-output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import UserError


def explicit_output(spec: Any) -> Optional[str]:
    """The real path of the output dir a run's args name, if they name one (else danlu gives it its own): two
    spellings of one folder (relative to the workdir, through a symlink) are one path."""
    if not spec.output_arg:
        return None
    value = spec.args.get(spec.output_arg)
    if value is None or value is False:
        return None
    from ..store import real_output_dir

    return real_output_dir(str(value), str(spec.workdir))


def output_problems(specs: Sequence[Any], store_path: Path) -> List[UserError]:
    """Runs of this request that share an output dir, or take one that a run in the store owns."""
    problems: List[UserError] = []
    first: Dict[str, int] = {}
    for k, spec in enumerate(specs):
        out = explicit_output(spec)
        if out is None:
            continue
        if out in first:
            problems.append(
                UserError(
                    f"runs {first[out]} and {k} of this sweep would write one output dir ({out})",
                    f"leave args.{spec.output_arg} unset (each run gets its own) or sweep it too",
                )
            )
            break
        first[out] = k
    if problems or not first or not store_path.exists():
        return problems
    from ..store import Store

    store = Store(store_path)
    try:
        for out in first:
            owner = store.output_owner(out)
            if owner:
                problems.append(
                    UserError(
                        f"output dir {out} belongs to run {owner}: this run would resume from its checkpoints and "
                        f"overwrite them",
                        f"to train {owner} further: danlu rerun {owner} --continue OVERRIDES; "
                        f"to share it anyway: --reuse-output",
                    )
                )
                break
    finally:
        store.close()
    return problems


def _hint(folders: Sequence[Any]) -> str:
    """How to give each run its own folders, for every folder found shared."""
    keys = list(dict.fromkeys(f"++{f.key}=..." for f in folders if f.key))
    how = [
        f"set {' '.join(keys)} per run (interpolate what the sweep varies: '../ckpt/${{args.KEY}}')" if keys else "",
        "list a --config of each run's own after the shared one" if any(not f.key for f in folders) else "",
    ]
    how.insert(0, "leave own_folders=true (each run's below its own output dir)")
    return f"give each run its own folders: {'; '.join(h for h in how if h)}; or pass --reuse-output to share them"


# folder -> the first run of this request writing there, and how (its spec/lightning.Folder)
FirstWriters = Dict[str, Tuple[int, Any]]
# folder -> what the error says, and how this request writes there
Clashes = Dict[str, Tuple[str, Any]]


def folder_problems(specs: Sequence[Any], store_path: Path) -> List[UserError]:
    """Runs of this request that would write into one folder of a LightningCLI config (a ModelCheckpoint dirpath, a
    logger's fixed version, trainer.default_root_dir: spec/lightning.output_folders), or into one that a run in the
    store still queued or running writes into. One problem per folder (the first names two runs)."""
    first, clashes = _shared_in_request(specs)
    if first and store_path.exists():
        _add_shared_with_store(first, clashes, _active_configs(store_path))
    hint = _hint([f for _, f in clashes.values()])
    return [UserError(message, hint) for message, _ in clashes.values()]


def _shared_in_request(specs: Sequence[Any]) -> Tuple[FirstWriters, Clashes]:
    """Who of this request writes first into each folder, and the folders two of its runs write into."""
    from ..spec.lightning import keeps_progress, output_folders

    first: FirstWriters = {}
    clashes: Clashes = {}
    for k, spec in enumerate(specs):
        if spec.own_folders and keeps_progress(spec):
            continue  # its folders are below its own output dir (spec/lightning.extra_config)
        for folder in output_folders(spec.args, spec.workdir):
            if folder.versioned:
                continue  # Lightning gives each start its own version_N below it
            if folder.path not in first:
                first[folder.path] = (k, folder)
            elif first[folder.path][0] != k and folder.path not in clashes:
                clashes[folder.path] = (
                    f"runs {first[folder.path][0]} and {k} of this sweep would write into one folder: "
                    f"{folder.path} ({folder.what})",
                    folder,
                )
    return first, clashes


def _active_configs(store_path: Path) -> List[Any]:
    """The store's runs still queued or running, with their configs."""
    from ..store import Store

    store = Store(store_path)
    try:
        return store.active_configs()
    finally:
        store.close()


def _add_shared_with_store(first: FirstWriters, clashes: Clashes, rows: List[Any]) -> None:
    """Adds to `clashes` the folders this request would write into that a queued or running run writes into."""
    from ..spec.lightning import has_own_folders, output_folders

    for row in rows:
        cfg = json.loads(row["config"])
        args = cfg.get("args")
        if not isinstance(args, dict) or has_own_folders(cfg):
            continue
        for folder in output_folders(args, str(row["workdir"] or cfg.get("workdir") or ".")):
            if folder.path in first and not folder.versioned and folder.path not in clashes:
                k, ours = first[folder.path]
                clashes[folder.path] = (
                    f"run {row['run']} (still queued or running) writes into {folder.path} ({folder.what}); "
                    f"run {k} of this sweep would too",
                    ours,
                )
