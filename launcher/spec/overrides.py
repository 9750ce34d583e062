"""Override text: parsed with Hydra's parser, a sweep expanded into its points, each override written back as text;
a rerun's overrides on top of the original ones."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Sequence, Tuple, cast

from ..errors import UserError
from .config_errors import GROUPS_HINT, one_line
from .config_groups import group_options

if TYPE_CHECKING:
    # hydra is imported where used: status never composes
    from hydra.core.override_parser.types import Glob, Override


def _parse(overrides: Sequence[str]) -> List[Override]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed: List[Override] = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except OverrideParseException as e:
            raise UserError(f"malformed override {text!r}: {one_line(e)}", GROUPS_HINT) from None
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
    axes: List[List[Tuple[Any, Any]]] = []
    for ov in _parse(overrides):
        if ov.is_sweep_override():
            if not multirun:
                raise UserError(
                    f"{ov.input_line!r} is a sweep but -m was not given",
                    "add -m (multirun) to expand sweeps, or give a single value",
                )
            axes.append([(ov, _plain(v)) for v in _sweep_values(ov, dirs)])
        else:
            axes.append([(ov, None if ov.is_delete() else ov.value())])
    return [list(p) for p in itertools.product(*axes)] if axes else [[]]


def _sweep_values(ov: Override, dirs: Sequence[Path]) -> List[Any]:
    """The values of one sweep override: a glob() over a group's options, or the sweep's own values."""
    if "GLOB" in str(ov.value_type):
        options = group_options(dirs, ov.key_or_group)
        # a glob() sweep's value is a Glob, which hydra's union of value types leaves out
        values: List[Any] = cast("Glob", ov._value).filter(options)
        if not values:
            raise UserError(
                f"{ov.input_line!r} matches no option of {ov.key_or_group!r}",
                f"options are: {', '.join(options) or '(none)'}",
            )
        return values
    values = list(ov.sweep_iterator())
    if not values:
        raise UserError(
            f"{ov.input_line!r} gives no values: the sweep has no runs",
            f"give {ov.key_or_group} at least one value, e.g. {ov.key_or_group}=range(0,3) or {ov.key_or_group}=1,2",
        )
    return values


def override_text(ov: Any, value: Any) -> str:
    """One override with one value, as it is recorded and shown: `+key=v`, `++key=v`, `key=v`, `~key`."""
    prefix = {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(ov.type.name, "")
    if ov.is_delete():
        return f"~{ov.key_or_group}"
    return f"{prefix}{ov.key_or_group}={_fmt(value)}"


def merge_overrides(original: List[str], new: List[str]) -> List[str]:
    """Original overrides with the new ones applied on top (a key given again is replaced)."""

    def key(o: str) -> str:
        return o.split("=", 1)[0].lstrip("+~")

    replaced = {key(o) for o in new}
    return [o for o in original if key(o) not in replaced] + list(new)
