"""`danlu options`: every config key with its default and help (from the dataclasses in spec/options.py); with
overrides naming an experiment, also the flags its program declares (read from its source, never imported)."""

from __future__ import annotations

import json
from argparse import Namespace
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple


def _types(cls: type, prefix: str = "") -> Dict[str, str]:
    """key -> its type in a word (int, str|null, list, map ...), from the dataclasses of spec/options.py."""
    out: Dict[str, str] = {}
    for f in fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if is_dataclass(default):
            out.update(_types(type(default), f"{prefix}{f.name}."))
            continue
        text = str(f.type)
        inner = text[len("Optional[") : -1] if text.startswith("Optional[") else text
        word = {"List": "list", "Dict": "map", "Any": "any"}.get(inner.split("[")[0], inner)
        out[f"{prefix}{f.name}"] = word + ("|null" if inner != text else "")
    return out


def _value(spec: Any, key: str) -> str:
    """The composed value of a dotted key, as `danlu options` shows a default (a map of profiles: its names)."""
    for part in key.split("."):
        spec = getattr(spec, part)
    if isinstance(spec, dict) and any(is_dataclass(v) for v in spec.values()):
        return "{" + ", ".join(spec) + "}"
    if isinstance(spec, dict) and len(repr(spec)) > 40:  # args: each one on a line of its own below
        return f"{{{len(spec)} keys}}"
    return repr(spec)


def _program_rows(spec: Any) -> Tuple[List[Dict[str, Any]], str]:
    """The program's flags as rows, and one line saying where they come from (or why there are none)."""
    from ..spec.program_args import flags_of, program_path

    path = program_path(spec.workdir, spec.program)
    flags = flags_of(spec)
    if flags is None:
        return [], f"# program flags: {path} cannot be read here (set workdir=... to your checkout)"
    rows = [
        {
            "key": f"args.{f.name}",
            "flag": "/".join(f.options),
            "default": f.shown_default,
            "set": spec.args.get(f.name, spec.args.get(f.dest)),
            "type": f.type,
            "choices": list(f.choices or []),
            "required": f.required,
            "help": f.help,
        }
        for f in flags.flags
    ]
    said = f"# program flags of {Path(str(path)).name} ({flags.parser}"
    said += (
        ", unknown flags passed on: not checked)"
        if flags.passes_unknown
        else ")"
        if flags.checkable
        else f": {flags.why_not_checked()})"
    )
    return rows, said


def run(args: Namespace) -> int:
    from ..spec.options import RunSpec, describe

    rows, types = describe(RunSpec), _types(RunSpec)
    program: List[Dict[str, Any]] = []
    said = ""
    values = {k: d for k, d, _ in rows}  # without overrides, the defaults; with them, the composed config's values
    if getattr(args, "overrides", None):
        from ..spec.compose import Composer

        (cfg,) = Composer(getattr(args, "config_dir", None)).runs(list(args.overrides), multirun=False, to_run=False)
        values = {k: _value(cfg.spec, k) for k in values}
        program, said = _program_rows(cfg.spec)
    if args.json:
        out: Any = [{"key": k, "value": values[k], "default": d, "type": types[k], "help": h} for k, d, h in rows]
        if getattr(args, "overrides", None):
            out = {"options": out, "program": program, "program_note": said.lstrip("# ")}
        print(json.dumps(out, indent=1))
        return 0
    if getattr(args, "overrides", None):
        print(f"# danlu's keys as {' '.join(args.overrides)} sets them (without overrides: the defaults)")
    width, vw = max(len(k) for k, _, _ in rows), min(24, max(len(v) for v in values.values()))
    tw = max(map(len, types.values()))
    for k, _, h in rows:
        print(f"{k:<{width}}  {values[k]:<{vw}} {types[k]:<{tw}}  {h}")
    if said:
        print()
        print(said)
        if program:
            kw = max(len(r["key"]) for r in program)
            dw = min(24, max(len(str(r["default"])) for r in program))
            for r in program:
                extra = [f"one of {', '.join(map(str, r['choices']))}"] if r["choices"] else []
                if r["required"]:
                    extra.append("required")
                if r["set"] is not None:
                    extra.append(f"experiment sets {r['set']}")
                tail = f" [{'; '.join(extra)}]" if extra else ""
                print(f"{r['key']:<{kw}}  {str(r['default']):<{dw}} {r['help']}{tail}")
    return 0
