"""Value overrides (`key=v`, `+key=v`, `++key=v`, `~key`) checked against the typed config of their choice of
groups, with Hydra's rules: `key=v` must exist, `+key=v` adds, `++key=v` forces, `~key` deletes.

Each check is cached; where a key's node takes a type's values as they are, one check stands for every value of
that type (a sweep of 10,000 seeds asks OmegaConf once, not 10,000 times).
"""

from __future__ import annotations

import copy
from dataclasses import is_dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import UserError
from .config_errors import config_error
from .interpolation import NODE_REF, dotted_has

Groups = Tuple[str, ...]  # one choice of config groups, as override texts


class ValueChecks:
    """The checks of one composer's value overrides, cached per choice of groups."""

    def __init__(self, compose: Callable[[Groups], Any]) -> None:
        """compose: a choice of groups -> (its typed config, the same resolved as plain data)."""
        self._compose = compose
        self._scratch: Dict[Groups, Any] = {}  # per group choice: a typed copy the checks write into
        self._checked: Dict[Tuple[Groups, str, Tuple[str, str]], Tuple[str, str, Any]] = {}
        self._passthrough: Dict[Tuple[Any, ...], str] = {}  # (groups, key, override type, program, value type) -> kind

    def _scratch_of(self, group_ovs: Groups, typed: Any) -> Any:
        cfg = self._scratch.get(group_ovs)
        if cfg is None:
            cfg = self._scratch[group_ovs] = copy.deepcopy(typed)
        return cfg

    def check(
        self, group_ovs: Groups, ov: Any, value: Any, text: str, program: Tuple[str, str] = ("", "")
    ) -> Tuple[str, str, Any]:
        """Validate one value override against the typed config (cached): (its kind, its key, the typed value)."""
        cache_key = (group_ovs, text, program)
        if cache_key in self._checked:
            return self._checked[cache_key]
        scalar = _scalar(value)
        like = (group_ovs, ov.key_or_group, ov.type.name, program, type(value))
        if scalar and like in self._passthrough:
            return self._passthrough[like], ov.key_or_group, value
        typed, plain = self._compose(group_ovs)
        cfg = self._scratch_of(group_ovs, typed)
        key = ov.key_or_group
        exists = dotted_has(plain, key)
        kind = _kind(ov.type.name, key, exists, program, plain)
        if kind != "DEL" and not exists:
            unknown = _unknown_option(typed, key, text)
            if unknown is not None:
                raise unknown
        refused = _refused(kind, key, exists, text)
        if refused is not None:
            raise refused
        checked = None if kind == "DEL" else _applied(cfg, kind, key, value)
        self._checked[cache_key] = (kind, key, checked)
        if scalar and type(checked) is type(value) and checked == value:
            # the key's node takes this type's values as they are (an Any, int, float, bool or str node): the
            # same check with another value of the type gives that value back
            self._passthrough[like] = kind
        return self._checked[cache_key]

    def typed(self, group_ovs: Groups, key: str, value: Any) -> Any:
        """`value` as the typed config holds it at `key` (OmegaConf's conversion and check)."""
        scalar = _scalar(value)
        like = (group_ovs, key, "TYPED", ("", ""), type(value))
        if scalar and like in self._passthrough:  # the key's node takes this type's values as they are
            return value
        from omegaconf import OmegaConf, open_dict
        from omegaconf.errors import OmegaConfBaseException

        typed, _ = self._compose(group_ovs)
        cfg = self._scratch_of(group_ovs, typed)
        try:
            with open_dict(cfg):
                OmegaConf.update(cfg, key, value, merge=False, force_add=True)
            node = OmegaConf.select(cfg, key)
            checked = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        except OmegaConfBaseException as e:
            raise config_error(e) from None
        if scalar and type(checked) is type(value) and checked == value:
            self._passthrough[like] = "TYPED"
        return checked


def _scalar(value: Any) -> bool:
    """A value one check may stand for: an int, float, bool or str that interpolates nothing."""
    return type(value) in (int, float, bool, str) and not (isinstance(value, str) and "$" in value)


def _kind(kind: str, key: str, exists: bool, program: Tuple[str, str], plain: Dict[str, Any]) -> str:
    """The override's kind (CHANGE, ADD, FORCE_ADD, DEL): `args.KEY=...` of a flag the program declares adds it
    like `+args.KEY=...`."""
    if kind == "CHANGE" and not exists and key.startswith("args.") and key.count(".") == 1:
        from .program_args import declares

        if declares(program[0], program[1], key[len("args.") :], plain.get("experiment")):
            return "ADD"
    return kind


def _refused(kind: str, key: str, exists: bool, text: str) -> Optional[UserError]:
    """Hydra's rules: a key deleted or changed must exist, a key added must not."""
    if kind == "DEL" and not exists:
        return UserError(f"cannot delete {key!r}: no such key", "check the key with `danlu submit ... --dry-run`")
    if kind == "CHANGE" and not exists:
        return UserError(
            f"unknown key {key!r} in override {text!r}",
            f"use +{key}=... to add a new key, or `danlu options` to list the known ones",
        )
    if kind == "ADD" and exists:
        return UserError(f"{key!r} already exists; +{key} adds only new keys", f"use {key}=... to change it")
    return None


def _applied(cfg: Any, kind: str, key: str, value: Any) -> Any:
    """The value as the typed config takes it at `key` (written into `cfg`); an interpolating value as it is."""
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    try:
        if kind == "CHANGE":
            OmegaConf.update(cfg, key, value, merge=True)
        else:
            with open_dict(cfg):
                OmegaConf.update(cfg, key, value, merge=True, force_add=True)
        if isinstance(value, str) and NODE_REF.search(value):
            return value  # resolved against the run's final config, after all its overrides (Composer._build)
        node = OmegaConf.select(cfg, key)
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except OmegaConfBaseException as e:
        raise config_error(e) from None


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
