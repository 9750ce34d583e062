"""Hydra configs in, validated run specifications out.

Composition is the slow part of Hydra (~0.1 s a call), so a sweep is composed once per distinct
choice of config groups (experiment, cluster, resources, ...); value overrides such as
`args.beta_dpo=2500,5000` are then applied to typed copies with Hydra's own override semantics
(`key=v` must exist, `+key=v` adds, `++key=v` forces, `~key` deletes): spec/value_checks.py.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..backends import for_spec
from ..errors import UserError
from .config_errors import config_error, default_cluster_hint
from .config_groups import cluster_chosen, compose_groups, group_names, recorded_dirs, register_resolvers, search_dirs
from .interpolation import NODE_REF, dotted_get, dotted_put, interpolated, resolve_again
from .options import PartitionSpec, RunSpec
from .overrides import expand, override_text
from .value_checks import ValueChecks

Point = List[Tuple[Any, Any]]  # one run of a sweep: (override, value) of each override


@dataclass
class RunConfig:
    """One run of a sweep: its overrides (as typed) and its validated spec."""

    overrides: List[str]
    spec: RunSpec
    resolved: Dict[str, Any]


class Composer:
    """Composes configs from the search path, caching by the choice of config groups."""

    def __init__(self, config_dir: Optional[str] = None, dirs: Optional[Sequence[str]] = None) -> None:
        """config_dir: --config-dir; dirs: the search dirs of an earlier submit, as recorded (sources())."""
        self.dirs = search_dirs(config_dir) if dirs is None else recorded_dirs(dirs)
        self.groups = group_names(self.dirs)
        self._cache: Dict[Tuple[str, ...], Any] = {}
        self._interpolations: Dict[Tuple[str, ...], Dict[str, str]] = {}  # per group choice: key -> "${...}" text
        self._chosen: Dict[Tuple[str, ...], bool] = {}  # per group choice: did a config file choose the cluster
        self._values = ValueChecks(self._compose)
        register_resolvers()

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

    def _group_overrides(self, point: Point) -> Tuple[str, ...]:
        """The point's choice of config groups, as override texts: what a composition is cached by."""
        return tuple(override_text(ov, v) for ov, v in point if self._is_group(ov))

    def _compose(self, group_overrides: Tuple[str, ...]) -> Any:
        """(typed config, the same resolved as plain data) of one choice of groups, composed once."""
        if group_overrides in self._cache:
            return self._cache[group_overrides]
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        cfg = compose_groups(self.dirs, self.groups, group_overrides)
        try:
            typed = OmegaConf.merge(OmegaConf.structured(RunSpec), cfg)
            OmegaConf.to_object(typed)  # every value fits its field
            plain = OmegaConf.to_container(typed, resolve=True)
        except OmegaConfBaseException as e:
            raise config_error(e) from None
        self._cache[group_overrides] = (typed, plain)
        self._interpolations[group_overrides] = dict(interpolated(OmegaConf.to_container(typed, resolve=False)))
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
                if not for_spec(cfg.spec).in_slurm and not self._cluster_chosen(self._group_overrides(point)):
                    raise UserError(
                        "no cluster chosen: Slurm is here (sbatch), but the built-in default cluster=local would "
                        "train on this login node",
                        "pass cluster=local to run here on purpose, or cluster=NAME (`danlu cluster init NAME` "
                        "writes its profile); " + default_cluster_hint(),
                    )
        return cfgs

    def _cluster_chosen(self, group_ovs: Tuple[str, ...]) -> bool:
        """Whether a config file chose the cluster rather than the root config's built-in default (cached)."""
        if group_ovs not in self._chosen:
            self._chosen[group_ovs] = cluster_chosen(self.dirs, group_ovs)
        return self._chosen[group_ovs]

    def _build(self, point: Point) -> RunConfig:
        """One run: its choice of groups composed (cached), its value overrides checked and applied in order."""
        group_ovs = self._group_overrides(point)
        _, plain = self._compose(group_ovs)
        cfg = _copy(plain)
        texts: List[str] = []
        given: Dict[str, str] = {}  # overrides whose values interpolate: key -> "${...}" text
        program = self._program(point, plain)
        for ov, value in point:
            value = _as_written(ov, value)
            text = override_text(ov, value)
            texts.append(text)
            if not self._is_group(ov):
                kind, key, checked = self._values.check(group_ovs, ov, value, text, program)
                _apply(cfg, given, kind, key, checked)
        self._resolve(group_ovs, point, cfg, given)
        spec = spec_from_dict(RunSpec, cfg)
        from .program_args import settle

        settle(spec)
        return RunConfig(overrides=texts, spec=spec, resolved=cfg)

    def _program(self, point: Point, plain: Dict[str, Any]) -> Tuple[str, str]:
        """(workdir, program) as this run will have them: `args.KEY=...` needs no `+` for a flag the program
        declares."""
        where = {k: plain.get(k) for k in ("workdir", "program")}
        where.update(
            {
                ov.key_or_group: value
                for ov, value in point
                if ov.key_or_group in where and not self._is_group(ov) and not ov.is_delete()
            }
        )
        return str(where["workdir"]), str(where["program"])

    def _resolve(self, group_ovs: Tuple[str, ...], point: Point, cfg: Dict[str, Any], given: Dict[str, str]) -> None:
        """The run's interpolations resolved again against its own values (spec/interpolation.py)."""
        changed = [ov.key_or_group for ov, _ in point if not self._is_group(ov)]
        if given or (changed and self._interpolations.get(group_ovs)):
            resolve_again(cfg, self._interpolations.get(group_ovs) or {}, changed, given)
            for key in given:  # as the key's type holds the resolved value (an int field: 7, not "7")
                dotted_put(cfg, key, self._values.typed(group_ovs, key, dotted_get(cfg, key)))


def _as_written(ov: Any, value: Any) -> Any:
    """An env.vars value as the command line wrote it: it is exported exactly so (true, 01, 1e3; not True,
    1000.0)."""
    if (
        ov.key_or_group.startswith("env.vars.")
        and not ov.is_delete()
        and not ov.is_sweep_override()
        and value is not None
        and not isinstance(value, str)
    ):
        return ov.input_line.split("=", 1)[1]
    return value


def _apply(cfg: Dict[str, Any], given: Dict[str, str], kind: str, key: str, checked: Any) -> None:
    """One checked value override written into the run's config; `given` notes the key if its value interpolates."""
    parent_key, _, leaf = key.rpartition(".")
    parent = cfg
    for part in parent_key.split(".") if parent_key else []:
        parent = parent.setdefault(part, {})
    if kind == "DEL":
        parent.pop(leaf, None)
    else:
        parent[leaf] = checked
    if kind != "DEL" and isinstance(checked, str) and NODE_REF.search(checked):
        given[key] = checked
    else:
        given.pop(key, None)


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
