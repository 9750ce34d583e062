"""Values that interpolate other keys (`${args.lr}`), resolved again after one run's value overrides, as Hydra would;
and the dotted keys of a plain config (nested dicts) they are read and written at."""

from __future__ import annotations

import copy
import re
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

from .config_errors import config_error

NODE_REF = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*\}")  # ${args.lr}; not a resolver such as ${oc.env:X}


def interpolated(node: Any, prefix: str = "") -> Iterator[Tuple[str, str]]:
    """(dotted key, text) of every value of the unresolved config that interpolates another key."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from interpolated(v, f"{prefix}{k}.")
    elif isinstance(node, str) and NODE_REF.search(node):
        yield prefix[:-1], node


def resolve_again(
    cfg: Dict[str, Any], interpolations: Dict[str, str], changed: Sequence[str], given: Optional[Dict[str, str]] = None
) -> None:
    """Hydra's semantics for value overrides: interpolations are resolved after them. The config was resolved once
    per choice of groups (fast for big sweeps); a value that interpolates a key this run overrides (directly, or
    through another such value) is resolved again, against this run's values. `given`: the overrides whose own
    values interpolate (key -> "${...}" text), resolved here against the run's final values too."""
    given = given or {}
    stale = _stale(interpolations, changed, given)
    if not stale:
        return
    plain = _substitutable(cfg, stale)
    _substitute(cfg, plain, given)
    rest = {k: t for k, t in stale.items() if k not in plain}
    if rest:
        _resolve_with_omegaconf(cfg, rest)


def _touches(ref: str, keys: Sequence[str]) -> bool:
    """Whether a reference reads one of the keys: the key itself, a key below it or above it."""
    return any(ref == k or ref.startswith(k + ".") or k.startswith(ref + ".") for k in keys)


def _stale(interpolations: Dict[str, str], changed: Sequence[str], given: Dict[str, str]) -> Dict[str, str]:
    """What to resolve again: the given values, and every value that interpolates a changed key or another stale
    value."""
    keys, stale = list(changed), dict(given)
    while True:
        more = {
            k: text
            for k, text in interpolations.items()
            if k not in stale and k not in changed and any(_touches(ref, keys) for ref in NODE_REF.findall(text))
        }
        if not more:
            return stale
        stale.update(more)
        keys += list(more)


def _substitutable(cfg: Dict[str, Any], stale: Dict[str, str]) -> Dict[str, str]:
    """The stale values that only refer to keys with values (no resolver, no escaped `\\${`, no stale key)."""
    return {
        k: t
        for k, t in stale.items()
        if "\\${" not in t
        and t.count("${") == len(NODE_REF.findall(t))
        and all(ref not in stale and dotted_has(cfg, ref) for ref in NODE_REF.findall(t))
    }


def _substitute(cfg: Dict[str, Any], plain: Dict[str, str], given: Dict[str, str]) -> None:
    """The references of `plain` substituted here, as OmegaConf would substitute them."""
    for key, text in plain.items():
        whole = NODE_REF.fullmatch(text)
        value = (
            copy.deepcopy(dotted_get(cfg, whole.group(1)))
            if whole
            else NODE_REF.sub(lambda m: str(dotted_get(cfg, m.group(1))), text)
        )
        if key not in given and isinstance(dotted_get(cfg, key), str) and not isinstance(value, str):
            value = str(value)  # the key's type, as its first resolution had it (a str field: "7", not 7)
        dotted_put(cfg, key, value)


def _resolve_with_omegaconf(cfg: Dict[str, Any], stale: Dict[str, str]) -> None:
    """The other stale values, resolved by OmegaConf against only what they refer to (a whole config per run would
    cost ~10 ms: 1,000 runs, 10 s)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    small: Dict[str, Any] = {}
    for text in stale.values():
        for ref in NODE_REF.findall(text):
            if ref not in stale and dotted_has(cfg, ref):
                dotted_put(small, ref, copy.deepcopy(dotted_get(cfg, ref)))
    for key, text in stale.items():
        dotted_put(small, key, text)
    conf = OmegaConf.create(small)
    for key in stale:
        try:
            value = OmegaConf.select(conf, key)
            dotted_put(cfg, key, OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)
        except OmegaConfBaseException as e:
            raise config_error(e) from None


def dotted_get(data: Dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        node = node[part]
    return node


def dotted_put(data: Dict[str, Any], dotted: str, value: Any) -> None:
    parent_key, _, leaf = dotted.rpartition(".")
    for part in parent_key.split(".") if parent_key else []:
        data = data.setdefault(part, {})
    data[leaf] = value


def dotted_has(data: Dict[str, Any], dotted: str) -> bool:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
