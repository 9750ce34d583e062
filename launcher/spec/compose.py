"""Hydra configs in, validated run specifications out.

Composition is the slow part of Hydra (~0.1 s a call), so a sweep is composed once per distinct
choice of config groups (experiment, cluster, resources, ...); value overrides such as
`args.beta_dpo=2500,5000` are then applied to typed copies with Hydra's own override semantics
(`key=v` must exist, `+key=v` adds, `++key=v` forces, `~key` deletes).
"""

from __future__ import annotations

import copy
import itertools
import re
import shutil
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, cast

from ..errors import UserError
from ..paths import examples_dir, jobs_dir, user_config_dir
from .options import PartitionSpec, RunSpec

if TYPE_CHECKING:
    # hydra is imported where used: status never composes
    from hydra.core.override_parser.types import Glob, Override

GROUPS_HINT = "Hydra override syntax: key=value, group=option, +new.key=value, ~key; sweep with -m key=a,b"


def default_cluster_hint(name: str = "NAME") -> str:
    """How to make a cluster the default, as one line: the file and its exact lines."""
    return (
        "make it your default with jobs/local/default.yaml (or ~/.config/danlu/jobs/local/default.yaml) whose "
        f"lines are `# @package _global_` (the first line), `defaults:` and, indented, `- override /cluster: {name}`"
    )


@dataclass
class RunConfig:
    """One run of a sweep: its overrides (as typed) and its validated spec."""

    overrides: List[str]
    spec: RunSpec
    resolved: Dict[str, Any]


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


def _recorded_dirs(dirs: Sequence[str]) -> List[Path]:
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


def _register_resolvers() -> None:
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


def _one_line(text: object) -> str:
    first = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return first[0] if first else str(text)


def _parse(overrides: Sequence[str]) -> List[Override]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed: List[Override] = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except OverrideParseException as e:
            raise UserError(f"malformed override {text!r}: {_one_line(e)}", GROUPS_HINT) from None
    return parsed


def _plain(value: Any) -> Any:
    """A swept value as plain data: Hydra keeps quoted strings of a sweep as QuotedString objects."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    from hydra.core.override_parser.types import QuotedString

    return value.text if isinstance(value, QuotedString) else value


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        from hydra.core.override_parser.types import Override

        return Override._get_value_element_as_str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def expand(overrides: Sequence[str], multirun: bool, dirs: Sequence[Path]) -> List[List[Any]]:
    """Cartesian product of sweep overrides: a list of points, each a list of (override, value)."""
    parsed = _parse(overrides)
    axes: List[List[Tuple[Any, Any]]] = []
    for ov in parsed:
        if ov.is_sweep_override():
            if not multirun:
                raise UserError(
                    f"{ov.input_line!r} is a sweep but -m was not given",
                    "add -m (multirun) to expand sweeps, or give a single value",
                )
            if "GLOB" in str(ov.value_type):
                options = group_options(dirs, ov.key_or_group)
                # a glob() sweep's value is a Glob, which hydra's union of value types leaves out
                values: List[Any] = cast("Glob", ov._value).filter(options)
                if not values:
                    raise UserError(
                        f"{ov.input_line!r} matches no option of {ov.key_or_group!r}",
                        f"options are: {', '.join(options) or '(none)'}",
                    )
            else:
                values = list(ov.sweep_iterator())
                if not values:
                    raise UserError(
                        f"{ov.input_line!r} gives no values: the sweep has no runs",
                        f"give {ov.key_or_group} at least one value, e.g. {ov.key_or_group}=range(0,3) or "
                        f"{ov.key_or_group}=1,2",
                    )
            axes.append([(ov, _plain(v)) for v in values])
        else:
            axes.append([(ov, None if ov.is_delete() else ov.value())])
    return [list(p) for p in itertools.product(*axes)] if axes else [[]]


def _override_text(ov: Any, value: Any) -> str:
    prefix = {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(ov.type.name, "")
    if ov.is_delete():
        return f"~{ov.key_or_group}"
    return f"{prefix}{ov.key_or_group}={_fmt(value)}"


class Composer:
    """Composes configs from the search path, caching by the choice of config groups."""

    def __init__(self, config_dir: Optional[str] = None, dirs: Optional[Sequence[str]] = None) -> None:
        """config_dir: --config-dir; dirs: the search dirs of an earlier submit, as recorded (sources())."""
        self.dirs = search_dirs(config_dir) if dirs is None else _recorded_dirs(dirs)
        self.groups = group_names(self.dirs)
        self._cache: Dict[Tuple[str, ...], Any] = {}
        self._scratch: Dict[Tuple[str, ...], Any] = {}
        self._interpolations: Dict[Tuple[str, ...], Dict[str, str]] = {}  # per group choice: key -> "${...}" text
        self._checked: Dict[Tuple[Tuple[str, ...], str, Tuple[str, str]], Tuple[str, str, Any]] = {}
        self._passthrough: Dict[Tuple[Any, ...], str] = {}  # (groups, key, override type, program, value type) -> kind
        self._chosen: Dict[Tuple[str, ...], bool] = {}  # per group choice: did a config file choose the cluster
        _register_resolvers()

    @classmethod
    def of_sweep(
        cls, sweep_row: Any, config_dir: Optional[str] = None, template_dir: Optional[str] = None
    ) -> Tuple["Composer", Optional[str]]:
        """(composer, template dir) of an earlier submit, as the store recorded them: a rerun composes and renders
        from the same files (its --config-dir, the ./jobs where it was submitted, --template-dir) wherever it runs;
        unless the rerun names its own (config_dir: as submit's --config-dir; template_dir)."""
        import json

        sources = json.loads(sweep_row["sources"]) if sweep_row is not None and sweep_row["sources"] else {}
        if template_dir is None and sources.get("template_dir"):
            template_dir = sources["template_dir"]
            if not Path(template_dir).is_dir():
                raise UserError(
                    f"template dir {template_dir!r} of the original submit no longer exists",
                    "put it back (the rerun renders the same templates), or name where they are now: danlu rerun "
                    "--template-dir DIR",
                )
        if config_dir is not None:
            return cls(config_dir), template_dir
        return (cls(dirs=sources["config_dirs"]) if sources.get("config_dirs") else cls()), template_dir

    def _is_group(self, ov: Any) -> bool:
        key = ov.key_or_group
        return key in self.groups or key.split("/")[0] in self.groups and "." not in key or key.startswith("hydra.")

    def _compose(self, group_overrides: Tuple[str, ...]) -> Any:
        if group_overrides in self._cache:
            return self._cache[group_overrides]
        from hydra import compose, initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        searchpath = ",".join(f"'file://{d}'" for d in self.dirs[1:])
        overrides = list(group_overrides) + ([f"hydra.searchpath=[{searchpath}]"] if searchpath else [])
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(self.dirs[0]), version_base=None):
                cfg = compose("config", overrides=overrides)
        except MissingConfigException as e:
            found = re.search(r"Could not find '([^/']+)/", str(e))
            group = found.group(1) if found else ""
            options = group_options(self.dirs, group) if group in self.groups else []
            hint = (
                f"options for {group!r}: {', '.join(options)}"
                if options
                else "run `danlu options` to list config groups"
            )
            raise UserError(_one_line(e).replace("In 'config': ", ""), hint) from None
        except (ConfigCompositionException, HydraException, OmegaConfBaseException) as e:
            cause = e.__cause__ or e
            said = _one_line(cause) or _one_line(e)
            hint = default_cluster_hint() if "'local/default'" in said and "@local." in said else GROUPS_HINT
            raise UserError(f"cannot compose the config: {said}", hint) from None
        finally:
            GlobalHydra.instance().clear()
        try:
            typed = OmegaConf.merge(OmegaConf.structured(RunSpec), cfg)
            OmegaConf.to_object(typed)  # every value fits its field
            plain = OmegaConf.to_container(typed, resolve=True)
        except OmegaConfBaseException as e:
            raise _config_error(e) from None
        self._cache[group_overrides] = (typed, plain)
        self._interpolations[group_overrides] = dict(_interpolated(OmegaConf.to_container(typed, resolve=False)))
        return typed, plain

    def runs(self, overrides: Sequence[str], multirun: bool = False, to_run: bool = True) -> List[RunConfig]:
        """The runs of a request. Where they run (local or Slurm) is decided here: without sbatch on this machine
        the built-in default cluster=local; with sbatch, a local run nobody chose (neither the command line nor a
        config file such as jobs/local/default.yaml) is refused when the runs are `to_run` (submit, rerun): it
        would train on the login node."""
        overrides = list(overrides)
        named = any(o.split("=", 1)[0].lstrip("+~") in ("cluster", "cluster.kind") for o in overrides)
        slurm_here = shutil.which("sbatch") is not None
        if not named and not slurm_here:
            overrides.insert(0, "cluster=local")  # no Slurm here: the embedded default
        points = expand(overrides, multirun, self.dirs)
        cfgs = [self._build(point) for point in points]
        if to_run and not named and slurm_here:
            for point, cfg in zip(points, cfgs, strict=True):
                group_ovs = tuple(_override_text(ov, v) for ov, v in point if self._is_group(ov))
                if cfg.spec.cluster.kind == "local" and not self._cluster_chosen(group_ovs):
                    raise UserError(
                        "no cluster chosen: Slurm is here (sbatch), but the built-in default cluster=local would "
                        "train on this login node",
                        "pass cluster=local to run here on purpose, or cluster=NAME (`danlu cluster init NAME` "
                        "writes its profile); " + default_cluster_hint(),
                    )
        return cfgs

    def _cluster_chosen(self, group_ovs: Tuple[str, ...]) -> bool:
        """Whether a config file chose the cluster (jobs/local/default.yaml, an experiment's `override /cluster`),
        rather than the root config's built-in default."""
        if group_ovs not in self._chosen:
            from hydra import initialize_config_dir
            from hydra.core.global_hydra import GlobalHydra
            from hydra.types import RunMode

            searchpath = ",".join(f"'file://{d}'" for d in self.dirs[1:])
            overrides = list(group_ovs) + ([f"hydra.searchpath=[{searchpath}]"] if searchpath else [])
            GlobalHydra.instance().clear()
            try:
                with initialize_config_dir(config_dir=str(self.dirs[0]), version_base=None):
                    loader = GlobalHydra.instance().config_loader()
                    found = loader.compute_defaults_list("config", overrides, RunMode.RUN)
            finally:
                GlobalHydra.instance().clear()
            self._chosen[group_ovs] = "cluster" in found.overrides.override_metadata
        return self._chosen[group_ovs]

    def _build(self, point: List[Tuple[Any, Any]]) -> RunConfig:
        group_ovs = tuple(_override_text(ov, v) for ov, v in point if self._is_group(ov))
        _, plain = self._compose(group_ovs)
        cfg = _copy(plain)
        texts: List[str] = []
        given: Dict[str, str] = {}  # overrides whose values interpolate: key -> "${...}" text
        # the program, as this run will have it: `args.KEY=...` needs no `+` for a flag the program declares
        where = {k: plain.get(k) for k in ("workdir", "program")}
        where.update(
            {
                ov.key_or_group: value
                for ov, value in point
                if ov.key_or_group in where and not self._is_group(ov) and not ov.is_delete()
            }
        )
        program = (str(where["workdir"]), str(where["program"]))
        for ov, value in point:
            if (
                ov.key_or_group.startswith("env.vars.")
                and not ov.is_delete()
                and not ov.is_sweep_override()
                and value is not None
                and not isinstance(value, str)
            ):
                value = ov.input_line.split("=", 1)[1]  # exported exactly as written: true, 01, 1e3 (not True, 1000.0)
            text = _override_text(ov, value)
            texts.append(text)
            if self._is_group(ov):
                continue
            kind, key, checked = self._check(group_ovs, ov, value, text, program)
            parent_key, _, leaf = key.rpartition(".")
            parent = cfg
            for part in parent_key.split(".") if parent_key else []:
                parent = parent.setdefault(part, {})
            if kind == "DEL":
                parent.pop(leaf, None)
            else:
                parent[leaf] = checked
            if kind != "DEL" and isinstance(checked, str) and _NODE_REF.search(checked):
                given[key] = checked
            else:
                given.pop(key, None)
        changed = [ov.key_or_group for ov, _ in point if not self._is_group(ov)]
        if given or (changed and self._interpolations.get(group_ovs)):
            _resolve_again(cfg, self._interpolations.get(group_ovs) or {}, changed, given)
            for key in given:  # as the key's type holds the resolved value (an int field: 7, not "7")
                _put(cfg, key, self._typed(group_ovs, key, _get(cfg, key)))
        spec = spec_from_dict(RunSpec, cfg)
        from .program_args import settle

        settle(spec)
        return RunConfig(overrides=texts, spec=spec, resolved=cfg)

    def _typed(self, group_ovs: Tuple[str, ...], key: str, value: Any) -> Any:
        """`value` as the typed config holds it at `key` (OmegaConf's conversion and check)."""
        scalar = type(value) in (int, float, bool, str) and not (isinstance(value, str) and "$" in value)
        like = (group_ovs, key, "TYPED", ("", ""), type(value))
        if scalar and like in self._passthrough:  # the key's node takes this type's values as they are
            return value
        from omegaconf import OmegaConf, open_dict
        from omegaconf.errors import OmegaConfBaseException

        typed, _ = self._compose(group_ovs)
        cfg = self._scratch.get(group_ovs)
        if cfg is None:
            cfg = self._scratch[group_ovs] = copy.deepcopy(typed)
        try:
            with open_dict(cfg):
                OmegaConf.update(cfg, key, value, merge=False, force_add=True)
            node = OmegaConf.select(cfg, key)
            checked = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        except OmegaConfBaseException as e:
            raise _config_error(e) from None
        if scalar and type(checked) is type(value) and checked == value:
            self._passthrough[like] = "TYPED"
        return checked

    def _check(
        self, group_ovs: Tuple[str, ...], ov: Any, value: Any, text: str, program: Tuple[str, str] = ("", "")
    ) -> Tuple[str, str, Any]:
        """Validate one value override against the typed config (cached): returns the typed value."""
        cache_key = (group_ovs, text, program)
        if cache_key in self._checked:
            return self._checked[cache_key]
        scalar = type(value) in (int, float, bool, str) and not (isinstance(value, str) and "$" in value)
        like = (group_ovs, ov.key_or_group, ov.type.name, program, type(value))
        if scalar and like in self._passthrough:  # a sweep of 10,000 seeds: OmegaConf once, not 10,000 times
            return self._passthrough[like], ov.key_or_group, value
        from omegaconf import OmegaConf, open_dict
        from omegaconf.errors import OmegaConfBaseException

        typed, plain = self._compose(group_ovs)
        cfg = self._scratch.get(group_ovs)
        if cfg is None:
            cfg = self._scratch[group_ovs] = copy.deepcopy(typed)
        key, kind = ov.key_or_group, ov.type.name
        exists = _dict_has(plain, key)
        if kind == "CHANGE" and not exists and key.startswith("args.") and key.count(".") == 1:
            from .program_args import declares

            if declares(program[0], program[1], key[len("args.") :], plain.get("experiment")):
                kind = "ADD"  # a flag of the program: args.KEY=... adds it like +args.KEY=...
        checked: Any = None
        if kind != "DEL" and not exists:
            unknown = _unknown_option(typed, key, text)
            if unknown is not None:
                raise unknown
        try:
            if kind == "DEL":
                if not exists:
                    raise UserError(
                        f"cannot delete {key!r}: no such key", "check the key with `danlu submit ... --dry-run`"
                    )
            elif kind == "CHANGE" and not exists:
                raise UserError(
                    f"unknown key {key!r} in override {text!r}",
                    f"use +{key}=... to add a new key, or `danlu options` to list the known ones",
                )
            elif kind == "ADD" and exists:
                raise UserError(f"{key!r} already exists; +{key} adds only new keys", f"use {key}=... to change it")
            else:
                if kind == "CHANGE":
                    OmegaConf.update(cfg, key, value, merge=True)
                else:
                    with open_dict(cfg):
                        OmegaConf.update(cfg, key, value, merge=True, force_add=True)
                if isinstance(value, str) and _NODE_REF.search(value):
                    checked = value  # resolved against the run's final config, after all its overrides (_build)
                else:
                    node = OmegaConf.select(cfg, key)
                    checked = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        except OmegaConfBaseException as e:
            raise _config_error(e) from None
        self._checked[cache_key] = (kind, key, checked)
        if scalar and type(checked) is type(value) and checked == value:
            # the key's node takes this type's values as they are (an Any, int, float, bool or str node): the
            # same check with another value of the type gives that value back
            self._passthrough[like] = kind
        return self._checked[cache_key]


def _unknown_option(typed: Any, key: str, text: str) -> Optional[UserError]:
    """A key (not in the config) that leaves danlu's own options: a name no dataclass of spec/options.py has, where
    neither `key=` nor `+key=` could mean anything (danlu would ignore it). None for a key under a mapping whose
    keys are the user's (args, arg_lists, env.vars, a new cluster.partitions entry): the usual rules apply there."""
    from omegaconf import DictConfig, OmegaConf

    node: Any = typed
    done: List[str] = []
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return None
        if part not in node:
            if not is_dataclass(OmegaConf.get_type(node)):
                return None  # a mapping of the user's keys
            names = [str(k) for k in node.keys()]
            where = ".".join(done)
            known = [f"{where}.{n}" if where else n for n in _similar(part, names)]
            bad = f"{where}.{part}" if where else part
            hint = f"did you mean {' or '.join(known)}? " if known else ""
            listed = f"`danlu options` lists every key{' of ' + where if where else ''}"
            return UserError(f"unknown key {bad!r} in override {text!r}: danlu has no such option", hint + listed)
        node = node._get_node(part)
        done.append(part)
    return None


def _similar(name: str, names: Sequence[str]) -> List[str]:
    """The names a misspelled `name` may have meant: close ones (difflib), else those it begins (gpu: gpu_type)."""
    import difflib

    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return close or [n for n in names if n.startswith(name)][:3]


_NODE_REF = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*\}")  # ${args.lr}; not a resolver such as ${oc.env:X}


def _interpolated(node: Any, prefix: str = "") -> Iterator[Tuple[str, str]]:
    """(dotted key, text) of every value of the unresolved config that interpolates another key."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _interpolated(v, f"{prefix}{k}.")
    elif isinstance(node, str) and _NODE_REF.search(node):
        yield prefix[:-1], node


def _resolve_again(
    cfg: Dict[str, Any], interpolations: Dict[str, str], changed: Sequence[str], given: Optional[Dict[str, str]] = None
) -> None:
    """Hydra's semantics for value overrides: interpolations are resolved after them. The config was resolved once
    per choice of groups (fast for big sweeps); a value that interpolates a key this run overrides (directly, or
    through another such value) is resolved again, against this run's values. `given`: the overrides whose own
    values interpolate (key -> "${...}" text), resolved here against the run's final values too."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    def touches(ref: str, keys: Sequence[str]) -> bool:
        return any(ref == k or ref.startswith(k + ".") or k.startswith(ref + ".") for k in keys)

    keys, stale = list(changed), dict(given or {})
    while True:
        more = {
            k: text
            for k, text in interpolations.items()
            if k not in stale and k not in changed and any(touches(ref, keys) for ref in _NODE_REF.findall(text))
        }
        if not more:
            break
        stale.update(more)
        keys += list(more)
    if not stale:
        return
    plain = {
        k: t
        for k, t in stale.items()
        if "\\${" not in t
        and t.count("${") == len(_NODE_REF.findall(t))
        and all(ref not in stale and _dict_has(cfg, ref) for ref in _NODE_REF.findall(t))
    }
    for key, text in plain.items():  # only references to keys with values: substituted here, as OmegaConf would
        whole = _NODE_REF.fullmatch(text)
        value = (
            copy.deepcopy(_get(cfg, whole.group(1)))
            if whole
            else _NODE_REF.sub(lambda m: str(_get(cfg, m.group(1))), text)
        )
        if key not in (given or {}) and isinstance(_get(cfg, key), str) and not isinstance(value, str):
            value = str(value)  # the key's type, as its first resolution had it (a str field: "7", not 7)
        _put(cfg, key, value)
    stale = {k: t for k, t in stale.items() if k not in plain}
    if not stale:
        return
    # only what these values refer to (a whole config per run would cost ~10 ms: 1,000 runs, 10 s)
    small: Dict[str, Any] = {}
    for text in stale.values():
        for ref in _NODE_REF.findall(text):
            if ref not in stale and _dict_has(cfg, ref):
                _put(small, ref, copy.deepcopy(_get(cfg, ref)))
    for key, text in stale.items():
        _put(small, key, text)
    conf = OmegaConf.create(small)
    for key in stale:
        try:
            value = OmegaConf.select(conf, key)
            _put(cfg, key, OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)
        except OmegaConfBaseException as e:
            raise _config_error(e) from None


def _get(data: Dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        node = node[part]
    return node


def _put(data: Dict[str, Any], dotted: str, value: Any) -> None:
    parent_key, _, leaf = dotted.rpartition(".")
    for part in parent_key.split(".") if parent_key else []:
        data = data.setdefault(part, {})
    data[leaf] = value


def spec_from_dict(cls: Any, data: Dict[str, Any]) -> Any:
    """Build the (already validated) nested dataclasses from a plain dict, fast."""
    names = _FIELD_NAMES.get(cls)
    if names is None:  # dataclasses.fields() is slow for a call per field of every run of a 10,000-run sweep
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        value = data[name]
        sub = _DATACLASS_FIELDS.get((cls, name))
        if sub is not None and isinstance(value, dict):
            value = spec_from_dict(sub, value)
        elif name == "partitions" and isinstance(value, dict):
            value = {k: spec_from_dict(PartitionSpec, v) for k, v in value.items()}
        kwargs[name] = value
    return cls(**kwargs)


_FIELD_NAMES: Dict[Any, Tuple[str, ...]] = {}


def _copy(data: Any) -> Any:
    """A copy of plain config data (dicts, lists, scalars), as copy.deepcopy makes it, 10x faster."""
    if isinstance(data, dict):
        return {k: _copy(v) if isinstance(v, (dict, list)) else v for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) if isinstance(v, (dict, list)) else v for v in data]
    return data


_DATACLASS_FIELDS: Dict[Tuple[Any, str], Any] = {}
for _cls in (RunSpec,):
    for _f in fields(_cls):
        _default = _f.default_factory() if callable(_f.default_factory) else None
        if is_dataclass(_default):
            _DATACLASS_FIELDS[(_cls, _f.name)] = type(_default)


def _dict_has(data: Dict[str, Any], dotted: str) -> bool:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _config_error(e: Exception) -> UserError:
    from omegaconf.errors import ConfigKeyError, InterpolationResolutionError, ValidationError

    key = getattr(e, "full_key", None) or ""
    msg = getattr(e, "msg", None) or _one_line(e)
    if isinstance(e, ConfigKeyError):
        return UserError(
            f"unknown key {key!r}: {_one_line(msg)}",
            "`danlu options` lists every known key; add new program args with +args.NAME=...",
        )
    if isinstance(e, ValidationError):
        return UserError(
            f"bad value for {key!r}: {_one_line(msg)}", "`danlu options` shows each key's type and default"
        )
    if isinstance(e, InterpolationResolutionError):
        return UserError(
            f"cannot resolve {key!r}: {_one_line(msg)}", "set the environment variable or override the key"
        )
    return UserError(f"bad config at {key!r}: {_one_line(msg)}", GROUPS_HINT)


def merge_overrides(original: List[str], new: List[str]) -> List[str]:
    """Original overrides with the new ones applied on top (a key given again is replaced)."""

    def key(o: str) -> str:
        return o.split("=", 1)[0].lstrip("+~")

    replaced = {key(o) for o in new}
    return [o for o in original if key(o) not in replaced] + list(new)
