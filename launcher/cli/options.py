"""`danlu options`: every config key with its default and help (from the dataclasses in spec/options.py); with
overrides naming an experiment, also the flags its program declares (read from its source, never imported)."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path
from typing import Any, Dict, List, Tuple


def _program_rows(args: Namespace) -> Tuple[List[Dict[str, Any]], str]:
    """The program's flags as rows, and one line saying where they come from (or why there are none)."""
    from ..spec.compose import Composer
    from ..spec.program_args import flags_of, program_path

    (cfg,) = Composer(getattr(args, "config_dir", None)).runs(list(args.overrides), multirun=False, to_run=False)
    spec = cfg.spec
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

    rows = describe(RunSpec)
    program: List[Dict[str, Any]] = []
    said = ""
    if getattr(args, "overrides", None):
        program, said = _program_rows(args)
    if args.json:
        out: Any = [{"key": k, "default": d, "help": h} for k, d, h in rows]
        if getattr(args, "overrides", None):
            out = {"options": out, "program": program, "program_note": said.lstrip("# ")}
        print(json.dumps(out, indent=1))
        return 0
    width = max(len(k) for k, _, _ in rows)
    for k, d, h in rows:
        print(f"{k:<{width}}  {d:<14} {h}")
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
