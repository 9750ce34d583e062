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

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import argparse

VERBS = (
    "submit",
    "status",
    "report",
    "notify",
    "logs",
    "stacks",
    "cancel",
    "show",
    "attach",
    "debug",
    "diff",
    "rerun",
    "cluster",
    "env",
    "options",
    "gc",
    "completion",
)


def entry() -> None:
    """The `danlu` command (and `python -m launcher.cli`): main(), then the process ends without the interpreter's
    teardown, which with Hydra, OmegaConf, jinja and submitit loaded takes ~0.1 s of every submit for nothing.
    What teardown would still do is done first: threads that are not daemons joined, atexit handlers run, the
    standard streams flushed. In-process callers (tests) use main(), which returns."""
    import atexit

    try:
        code = main()
    except SystemExit as e:  # argparse's --help, --version and usage errors
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    threading = sys.modules.get("threading")  # not imported: no thread to wait for (and `--help` stays light)
    if threading is not None:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
    os._exit(code)


def main(argv: list[str] | tuple[str, ...] | None = None) -> int:  # no typing import: 1/4 of `--help`'s time
    argv = list(sys.argv[1:] if argv is None else argv)
    if "DANLU_TIMINGS" in os.environ:  # where the time goes (launcher/timings.py)
        from ..timings import entered

        entered()
    if argv[:1] == ["__complete"]:  # the shell's TAB: fast, no Hydra, never an error
        from .shell_complete import complete

        return complete(argv[1:])
    parser, args = parse(argv)
    if not args.command:
        parser.print_help()
        return 0
    return run_verb(args)


def parse(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """(the parser, the arguments): only the arguments of the verb asked for are built (--help: none); an unknown
    verb gets the whole parser's error. An unknown option is a usage error (exit 2) naming the verb's --help."""
    from .parser import build_parser, verb_parser

    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser("" if first is None else first if first in VERBS else None)
    remote = None
    if first == "attach" and "--" in argv:  # the command to run there: its words are never danlu's options
        cut = argv.index("--")
        argv, remote = argv[:cut], argv[cut + 1 :]
    args, extra = parser.parse_known_args(argv)
    if remote is not None:
        args.remote = list(args.remote) + remote
    # overrides may come after options (danlu submit --name x a=1 b=2): argparse leaves those over; an override
    # never starts with '-', so what does is an unknown option, named alone and answered by the verb's own --help
    unknown = [e for e in extra if e.startswith("-")] if hasattr(args, "overrides") else extra
    if unknown:
        verb_parser(parser, args).error(
            f"unrecognized {'option' if all(e.startswith('-') for e in unknown) else 'argument'}"
            f"{'s' if len(unknown) > 1 else ''}: {' '.join(unknown)}"
        )
    if extra:
        args.overrides = list(args.overrides) + extra
    return parser, args


def run_verb(args: argparse.Namespace) -> int:
    """The verb's module run on `args`; what goes wrong becomes a message on stderr and the exit code."""
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
        hint = getattr(e, "hint", None)
        if hint:
            err(f"hint: {hint}")
        return 1
