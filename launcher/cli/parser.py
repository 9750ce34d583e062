"""danlu's arguments: one argparse parser, shared by the CLI and shell completion."""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from .output import err

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a tenth of `danlu --help`'s time)
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size() finds it, without importing shutil (with bz2 and lzma:
    a tenth of `danlu --help`'s time)."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    if sys.__stdout__ is None:  # no standard output at all (pythonw, some daemons)
        return 80
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_columns() - 2)


class _Parser(argparse.ArgumentParser):
    """argparse with danlu's error shape: one line, a hint, exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        err(f"error: {message}")
        err(f"hint: `{self.prog} --help` lists the arguments")
        raise SystemExit(2)


def verb_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command `args` were parsed for (`danlu env sync`'s, `danlu submit`'s), or `parser`
    itself: its errors' hint then names that command's --help."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)  # noqa: SLF001
        chosen = getattr(args, sub.dest, None) if sub is not None else None
        if sub is None or chosen not in sub.choices:
            return parser
        parser = sub.choices[chosen]


def _add_submitting(p: argparse.ArgumentParser) -> None:
    """The options of every verb that submits runs (submit, rerun), spelled and meant alike."""
    p.add_argument("--wait", action="store_true", help="block until the runs end; exit 1 if any failed")
    p.add_argument("--json", action="store_true", help="print {sweep, runs:[{run, job_id}]} on stdout")
    p.add_argument(
        "--refresh-cluster",
        action="store_true",
        help="read the live cluster's facts again now (else at most once an hour: limits, partitions)",
    )


def _submit_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu submit`'s arguments."""
    p.add_argument(
        "overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides: experiment=tiny_dpo args.beta_dpo=2500"
    )
    p.add_argument("-m", "--multirun", action="store_true", help="expand sweeps (key=a,b range() glob()) into runs")
    p.add_argument("--dry-run", action="store_true", help="print the script(s) that would be submitted; submit nothing")
    p.add_argument("--name", help="sweep name (default: <experiment>-<4 hex>)")
    p.add_argument("--config-dir", help="another folder of configs (<group>/<name>.yaml)")
    p.add_argument("--template-dir", help="a folder with your own copies of templates/*.j2")
    _add_submitting(p)
    p.add_argument(
        "--reuse-output",
        action="store_true",
        help="let runs write into an output dir another run owns (to train a run further: rerun --continue)",
    )


def _status_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu status`'s arguments."""
    p.add_argument("names", nargs="*", metavar="SWEEP|RUN")
    p.add_argument("--all", action="store_true", help="finished runs too")
    p.add_argument("--state", help="only these states, comma-separated (e.g. FAILED,TIMEOUT)")
    p.add_argument("--watch", action="store_true", help="refresh every few seconds")
    p.add_argument("--interval", type=float, default=3.0, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the runs as JSON on stdout (one object per run)")
    p.add_argument(
        "--no-metrics",
        action="store_true",
        help="leave out running runs' latest step and metric (read from the tail of each one's log)",
    )


def _logs_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu logs`'s arguments."""
    p.add_argument("run", metavar="RUN")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until the run ends")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--node", type=int, help="only this node's logs (0 is the head node)")
    g.add_argument("--rank", type=int, help="only this rank's lines")
    p.add_argument("--err", action="store_true", help="Slurm's own output of the batch script (errors before launch)")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    p.add_argument("--attempt", type=int, help="an earlier attempt (default: the latest)")


def _stacks_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu stacks`'s arguments."""
    p.add_argument("run", metavar="RUN")
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="wait this long for every node's answer (default 30)"
    )
    p.add_argument("--json", action="store_true", help="the stacks as JSON: node, host, rank, pid, how read, text")


def _report_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu report`'s arguments."""
    p.add_argument("sweep", metavar="SWEEP")
    p.add_argument("--metric", help="the metric to rank by (default: loss, else the first loss-like one found)")
    p.add_argument("--mode", choices=["min", "max"], help="better is lower or higher (default: from the name)")
    p.add_argument(
        "--group-by-seed",
        action="store_true",
        help="mean +- std over seeds per sweep point (automatic when a seed is swept)",
    )
    p.add_argument("--json", action="store_true", help="every run's values, summary and series")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="also write the report as one self-contained page: sortable table, a plot per metric, "
        "each run's log (needs the report extra: plotly)",
    )
    p.add_argument(
        "--metrics-dir",
        action="append",
        metavar="DIR",
        help="also search DIR for CSV and TensorBoard files of every run (relative: to each run's workdir; "
        "repeatable); the output dir and a LightningCLI config's log folders are searched anyway",
    )


def _notify_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu notify`'s arguments."""
    p.add_argument("sweep", metavar="SWEEP")
    p.add_argument("--dry-run", action="store_true", help="print the messages (JSON, one per line); send nothing")


def _cancel_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu cancel`'s arguments."""
    p.add_argument("names", nargs="+", metavar="SWEEP|RUN")
    p.add_argument("--state", help="only runs in these states, comma-separated (e.g. PENDING)")
    p.add_argument("--dry-run", action="store_true", help="print the runs that would be cancelled; cancel nothing")
    p.add_argument("--json", action="store_true", help="print [{run, job_id, state}] on stdout")


def _show_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu show`'s arguments."""
    p.add_argument("run", metavar="RUN")
    p.add_argument(
        "--full", action="store_true", help="also the whole resolved config and the batch script (at the end)"
    )
    p.add_argument("--json", action="store_true", help="everything, the whole config and script included")
    p.add_argument(
        "--diff",
        action="store_true",
        help="also the diff of the code the run ran against its git commit (its uncommitted changes, at the end)",
    )


def _diff_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu diff`'s arguments."""
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--stat", action="store_true", help="the code's changed files with lines added and removed only")
    p.add_argument("--json", action="store_true", help="print {config, code, environment} as JSON on stdout")


def _rerun_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu rerun`'s arguments."""
    p.add_argument("target", metavar="SWEEP|RUN")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE")
    p.add_argument(
        "--state",
        help="rerun runs whose latest attempt ended in these states, comma-separated (e.g. FAILED,TIMEOUT)",
    )
    p.add_argument(
        "--continue",
        dest="cont",
        action="store_true",
        help="a new attempt of COMPLETED runs with the OVERRIDES (e.g. args.max_train_steps=4000), "
        "resuming from their checkpoints",
    )
    p.add_argument("--dry-run", action="store_true", help="print the script(s) that would be submitted; submit nothing")
    p.add_argument("--exclude-failed-nodes", action="store_true", help="keep off the nodes the failed attempts ran on")
    p.add_argument(
        "--code",
        choices=("own", "current"),
        default="own",
        help="own: the code each run was submitted with (its snapshot); current: the workdir's code as it is now",
    )
    p.add_argument("--config-dir", help="compose from this folder of configs (and ./jobs), not the original submit's")
    p.add_argument("--template-dir", help="render with your copies of templates/*.j2, not the original submit's")
    _add_submitting(p)


def _cluster_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu cluster`'s arguments."""
    p.add_argument("--json", action="store_true", help="print the partitions as JSON on stdout")
    clsub = p.add_subparsers(dest="cluster_command", metavar="ACTION", parser_class=_Parser)
    ci = clsub.add_parser(
        "init", help="write jobs/cluster/NAME.yaml from the live cluster (partitions, GPU types, limits)"
    )
    ci.add_argument("name", metavar="NAME")
    ci.add_argument(
        "--here",
        action="store_true",
        help="write ./jobs/cluster/NAME.yaml (default: your own ~/.config/danlu/jobs/cluster/NAME.yaml)",
    )
    ci.add_argument("--force", action="store_true", help="replace an existing profile of that name")
    ci.add_argument("--dry-run", action="store_true", help="print the profile, write nothing")


def _env_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu env`'s arguments."""
    esub = p.add_subparsers(dest="env_command", metavar="ACTION", parser_class=_Parser)
    es = esub.add_parser("sync", help="uv sync envs/NAME into envs/NAME/.venv")
    es.add_argument("name", metavar="NAME")
    es.add_argument("--json", action="store_true", help="print what was synced as JSON on stdout")
    el = esub.add_parser("list", help="list the environments")
    el.add_argument("--json", action="store_true", help="print the environments as JSON on stdout")


def _options_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu options`'s arguments."""
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="e.g. experiment=diffusion_dpo workdir=...")
    p.add_argument("--config-dir", help="another folder of configs (<group>/<name>.yaml)")
    p.add_argument("--json", action="store_true", help="print the keys (and the program's flags) as JSON on stdout")


def _gc_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu gc`'s arguments."""
    p.add_argument("--dry-run", action="store_true", help="print what would be removed; remove nothing")
    p.add_argument(
        "--older-than",
        type=float,
        default=1.0,
        metavar="DAYS",
        help="remove a snapshot no run names once unused for DAYS (default 1: a submit freezes before it records)",
    )
    p.add_argument("--json", action="store_true", help="print [{store, trees_removed, ...}] on stdout")


def _attach_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu attach`'s arguments."""
    p.add_argument("run", metavar="RUN")
    p.add_argument("--node", type=int, default=0, help="which node of the run's job, 0-based (default 0: the head)")
    p.add_argument(
        "--pty", action="store_true", help="give COMMAND a terminal (htop, an editor); a shell always has one"
    )
    p.add_argument("--dry-run", action="store_true", help="print the srun command line; run nothing")
    p.add_argument("remote", nargs="*", metavar="-- COMMAND", help="run this instead of a shell (e.g. -- nvidia-smi)")


def _debug_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu debug`'s arguments."""
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides, as for danlu submit")
    p.add_argument("--debugpy", action="store_true", help="rank 0 waits for a debugger (VS Code) on port 5678")
    p.add_argument("--dry-run", action="store_true", help="print the salloc command line; allocate nothing")
    p.add_argument("--config-dir", help="another folder of configs (<group>/<name>.yaml)")
    p.add_argument("--template-dir", help="a folder with your own copies of templates/*.j2")
    p.add_argument(
        "--refresh-cluster",
        action="store_true",
        help="read the live cluster's facts again now (else at most once an hour: limits, partitions)",
    )


def _completion_arguments(p: argparse.ArgumentParser) -> None:
    """`danlu completion`'s arguments."""
    p.add_argument("shell", choices=["bash", "zsh"])


# Every verb in the order `danlu --help` lists them: its name, its line of help, and what adds its arguments.
VERB_PARSERS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("submit", "submit a run or a sweep (returns once Slurm has accepted it)", _submit_arguments),
    ("status", "squeue-style table of your runs", _status_arguments),
    ("logs", "a run's logs", _logs_arguments),
    ("stacks", "the Python stacks of every rank of a running run, which goes on", _stacks_arguments),
    ("report", "which run won: a sweep's runs by a metric they wrote (loss by default)", _report_arguments),
    (
        "notify",
        "send a sweep's messages now: each failed run not yet announced, then the "
        "summary (the sweep's summary job runs this once its runs have ended)",
        _notify_arguments,
    ),
    ("cancel", "cancel runs or whole sweeps", _cancel_arguments),
    ("show", "everything needed to reproduce a run", _show_arguments),
    ("attach", "a shell (or a command) inside a running run's job, on one of its nodes", _attach_arguments),
    (
        "debug",
        "a shell in a Slurm allocation of a run's shape, its environment and launch command ready",
        _debug_arguments,
    ),
    ("diff", "what differs between two runs: resolved config, frozen code, job environment", _diff_arguments),
    ("rerun", "resubmit the failed runs of a sweep (or one run)", _rerun_arguments),
    (
        "cluster",
        "partitions, GPUs total/allocated/free, pending jobs; `init NAME` writes a "
        "cluster profile from the live cluster",
        _cluster_arguments,
    ),
    ("env", "job environments (envs/NAME)", _env_arguments),
    (
        "options",
        "every config key with its default and help; with experiment=NAME, the program's own flags too",
        _options_arguments,
    ),
    ("gc", "remove the frozen code snapshots no run of the store names any more", _gc_arguments),
    ("completion", 'print a shell completion script: eval "$(danlu completion bash)"', _completion_arguments),
)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `verb`, only that verb's arguments (every verb is still listed): `danlu --help` and
    each command build what they use ("" builds none)."""
    p = _Parser(
        prog="danlu",
        description="Slurm experiment orchestration: Hydra configs in, Slurm jobs out, every run remembered.",
        epilog="Run ids look like SWEEP/INDEX (e.g. tiny_dpo-3f2a/0); a SWEEP names all its runs.",
    )
    p.add_argument("--version", action="version", version=f"danlu {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_line, add_arguments in VERB_PARSERS:
        verb_p = sub.add_parser(name, help=help_line)
        if verb is None or verb == name:
            add_arguments(verb_p)
    return p
