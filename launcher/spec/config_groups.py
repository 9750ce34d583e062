"""The config groups: the folders they are read from, the options of each, and one choice of them composed by Hydra.

Hydra is imported where it is used: `danlu status` never composes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, List, Optional, Sequence

from ..errors import UserError
from ..paths import examples_dir, jobs_dir, user_config_dir
from .config_errors import GROUPS_HINT, default_cluster_hint, one_line


def search_dirs(config_dir: Optional[str] = None) -> List[Path]:
    """Config roots in order: the bundled jobs/, the user's, ./jobs, and --config-dir."""
    dirs = [jobs_dir().resolve()]
    for extra in (user_config_dir() / "jobs", Path.cwd() / "jobs", Path(config_dir) if config_dir else None):
        if extra is not None and extra.is_dir() and extra.resolve() not in dirs:
            dirs.append(extra.resolve())
    if config_dir and not Path(config_dir).is_dir():
        raise UserError(
            f"config dir {config_dir!r} does not exist", "pass --config-dir a folder holding <group>/<name>.yaml files"
        )
    return dirs


def recorded_dirs(dirs: Sequence[str]) -> List[Path]:
    """The config dirs of an earlier submit (a rerun composes from the same files, wherever it is run from); the
    bundled jobs/ of this danlu if that one moved."""
    missing = [d for d in dirs[1:] if not Path(d).is_dir()]
    if missing:
        raise UserError(
            f"config dir {missing[0]!r} of the original submit no longer exists",
            "put it back (the rerun composes from the same configs), or name where they are now: danlu rerun "
            "--config-dir DIR",
        )
    first = Path(dirs[0]) if dirs and Path(dirs[0]).is_dir() else jobs_dir().resolve()
    return [first] + [Path(d) for d in dirs[1:]]


def group_names(dirs: Sequence[Path]) -> set[str]:
    names = set()
    for d in dirs:
        for sub in d.iterdir():
            if sub.is_dir() and not sub.name.startswith((".", "_")):
                names.add(sub.name)
    return names | {"local"}


def group_options(dirs: Sequence[Path], group: str) -> List[str]:
    opts: set[str] = set()
    for d in dirs:
        g = d / group
        if g.is_dir():
            opts.update(p.stem for p in g.glob("*.yaml"))
    return sorted(opts)


def register_resolvers() -> None:
    """The resolvers danlu's bundled configs use, registered once per process."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("danlu_examples"):
        OmegaConf.register_new_resolver("danlu_examples", lambda: str(examples_dir()))
    if not OmegaConf.has_resolver("danlu_ranks_per_node"):
        # ${danlu_ranks_per_node:${launch.tasks_per_node},${resources.gpus_per_node}}: the tasks per node that
        # launch=lightning starts (spec/validate.shape): launch.tasks_per_node, else one per GPU, 1 without GPUs
        OmegaConf.register_new_resolver("danlu_ranks_per_node", _ranks_per_node)
    if not OmegaConf.has_resolver("danlu_gpu_ids"):
        # ${danlu_gpu_ids:${resources.gpus_per_node}}: "0,1,2,3," (pytorch-lightning 1.x --gpus: these GPUs; the
        # trailing comma makes "0," one GPU, not none); null without GPUs
        OmegaConf.register_new_resolver("danlu_gpu_ids", _gpu_ids)


def _ranks_per_node(tasks_per_node: Optional[int], gpus_per_node: int) -> int:
    return int(tasks_per_node) if tasks_per_node is not None else max(1, int(gpus_per_node))


def _gpu_ids(gpus_per_node: int) -> Optional[str]:
    return "".join(f"{g}," for g in range(int(gpus_per_node))) or None


def _with_searchpath(dirs: Sequence[Path], group_overrides: Sequence[str]) -> List[str]:
    """The group overrides and, with config dirs besides the first, Hydra's search path of them."""
    searchpath = ",".join(f"'file://{d}'" for d in dirs[1:])
    return list(group_overrides) + ([f"hydra.searchpath=[{searchpath}]"] if searchpath else [])


def compose_groups(dirs: Sequence[Path], groups: set[str], group_overrides: Sequence[str]) -> Any:
    """The root config with this choice of groups, as Hydra composes it (untyped, unresolved)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    overrides = _with_searchpath(dirs, group_overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(dirs[0]), version_base=None):
            return compose("config", overrides=overrides)
    except MissingConfigException as e:
        raise _missing_option(e, dirs, groups) from None
    except (ConfigCompositionException, HydraException, OmegaConfBaseException) as e:
        cause = e.__cause__ or e
        said = one_line(cause) or one_line(e)
        hint = default_cluster_hint() if "'local/default'" in said and "@local." in said else GROUPS_HINT
        raise UserError(f"cannot compose the config: {said}", hint) from None
    finally:
        GlobalHydra.instance().clear()


def _missing_option(e: Exception, dirs: Sequence[Path], groups: set[str]) -> UserError:
    """A group option no config dir has, with the options the group does have."""
    found = re.search(r"Could not find '([^/']+)/", str(e))
    group = found.group(1) if found else ""
    options = group_options(dirs, group) if group in groups else []
    hint = f"options for {group!r}: {', '.join(options)}" if options else "run `danlu options` to list config groups"
    return UserError(one_line(e).replace("In 'config': ", ""), hint)


def cluster_chosen(dirs: Sequence[Path], group_overrides: Sequence[str]) -> bool:
    """Whether a config file chose the cluster (jobs/local/default.yaml, an experiment's `override /cluster`),
    rather than the root config's built-in default."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    overrides = _with_searchpath(dirs, group_overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(dirs[0]), version_base=None):
            loader = GlobalHydra.instance().config_loader()
            found = loader.compute_defaults_list("config", overrides, RunMode.RUN)
    finally:
        GlobalHydra.instance().clear()
    return "cluster" in found.overrides.override_metadata
