"""danlu's command line: one module per verb (submit.py, status.py, ...), each parse -> call the library -> print.

Data goes to stdout, messages to stderr; `--json` for scripts. Exit codes: 0 success (or nothing to do),
2 bad input (one-line error + hint, nothing done), 1 anything else. A verb's module is imported only when
that verb runs, so `danlu --help` and `danlu status` stay light (no torch, accelerate, hydra or jinja).
"""

from __future__ import annotations

import os
import sys

from ..errors import UserError
from .output import err

VERBS = ("submit", "status", "report", "notify", "logs", "cancel", "show", "rerun", "cluster", "env", "options", "completion")


def main(argv: list[str] | tuple[str, ...] | None = None) -> int:  # no typing import: 1/4 of `--help`'s time
    argv = list(sys.argv[1:] if argv is None else argv)
    if "DANLU_TIMINGS" in os.environ:  # where the time goes (launcher/timings.py)
        from ..timings import entered

        entered()
    if argv[:1] == ["__complete"]:  # the shell's TAB: fast, no Hydra, never an error
        from .shell_complete import complete

        return complete(argv[1:])
    from .parser import build_parser

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may come after options (danlu submit --name x a=1 b=2): argparse leaves those over
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") and "=" not in e for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not args.command:
        parser.print_help()
        return 0
    try:
        from importlib import import_module

        verb = import_module(f"{__name__}.{args.command}")
        return int(verb.run(args) or 0)
    except UserError as e:
        err(f"{'error: ' if e.exit_code else ''}{e.message}")
        err(f"hint: {e.hint}")
        return e.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # anything else: exit 1 with the reason (DANLU_DEBUG=1 for the traceback)
        if os.environ.get("DANLU_DEBUG"):
            raise
        err(f"error: {' '.join(str(e).split()) or type(e).__name__}")
        if getattr(e, "hint", None):
            err(f"hint: {e.hint}")
        return 1
