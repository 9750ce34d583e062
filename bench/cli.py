"""bench/run.py's command line: its arguments, the set-up (venv, bench extra, test clusters), the sections in the
order they run, and RESULTS.md (and the README's table) written at the end."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import List, Optional, Set, Tuple

import bench
from bench import big_store, code_freeze, controller_load, crash, launch, report_logs, startup, submit_command, sweep
from bench.headlines import headlines, update_readme
from bench.paths import BENCH, PYTHON, REPO, VENV_BIN
from bench.results import Results
from bench.session import Before, Session
from bench.shell import log, sh
from bench.writeup import machine, report

SECTIONS = ("startup", "submit", "sweep", "status", "report", "load", "crash", "launch", "code", "newer")
NO_SLURM = {"code"}  # sections measured on this machine's disk alone: `--only code` starts no cluster
QUICK_SECTIONS = "startup,submit,sweep,status,report,load"
BEFORE = "0f81f03"  # --before's default: main before issue 18's round two
RESULTS_MD = str(BENCH / "RESULTS.md")


@dataclass(frozen=True)
class Sizes:
    """How many times and how big each section measures: FULL, or QUICK (--quick: the headline rows only)."""

    submit_reps: int
    startup_reps: int
    sweep_loop: int  # sbatch calls of the shell loop beside the 10,000-run sweep (scaled to 10,000)
    sweep_reps: int
    status_sizes: Tuple[int, ...]
    status_reps: int
    status_small: bool  # the stores' small sweeps with 150 finished jobs, not 850
    report_logs: Tuple[int, int]  # (runs, steps)
    report_reps: int
    watch_s: float
    job_reps: int
    code_reps: int


FULL = Sizes(9, 15, 1000, 3, (10000, 100000), 5, False, (100, 10000), 5, 60, 2, 5)
QUICK = Sizes(3, 7, 200, 1, (10000,), 3, True, (20, 2000), 3, 0, 0, 3)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(bench.__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the headline rows only, smaller and fewer (under 3 minutes)")
    p.add_argument("--only", help=f"comma-separated subset: {','.join(SECTIONS)}")
    p.add_argument(
        "--before", default=BEFORE, help="the commit before this round, measured beside (full run; '' for none)"
    )
    p.add_argument("--newer", default="24.11", help="the newer test cluster for the headline rows ('' for none)")
    p.add_argument("--out", default=RESULTS_MD, help="where to write the results (markdown)")
    return p


def _in_venv(module: str) -> bool:
    """Whether the project's .venv can import `module`."""
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([PYTHON, "-c", probe], capture_output=True).returncode == 0


def _install(hydra: bool) -> None:
    """.venv with danlu, as the tests use it; the bench extra too when hydra-submitit-launcher is measured."""
    sh(["bash", str(REPO / "scripts" / "setup.sh")], timeout=900)
    if hydra and not _in_venv("hydra_plugins.hydra_submitit_launcher"):
        log("installing the bench extra into .venv (hydra-submitit-launcher, the alternative of section 1)")
        sh([str(VENV_BIN / "pip"), "install", "-q", "--disable-pip-version-check", "-e", f"{REPO}[bench]"], timeout=900)


def _start_clusters(newer: str) -> None:
    log("starting the test cluster (tests/cluster/up.sh)")
    sh(["bash", str(REPO / "tests" / "cluster" / "up.sh")], timeout=900)
    if newer:
        sh(["bash", str(REPO / "tests" / "cluster" / "up.sh"), newer], timeout=900)


def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    raise KeyboardInterrupt


def _measure(ses: Session, res: Results, only: Set[str], sizes: Sizes, hydra: bool, before: Optional[Before]) -> None:
    """The sections asked for, on the 22.05 test cluster, in this order."""
    if only - NO_SLURM:
        ses.use_slurm(res, "22.05")
    with_run = None
    if "submit" in only:
        with_run = submit_command.measure(ses, res, reps=sizes.submit_reps, before=before)
    if "startup" in only:
        startup.measure(ses, res, reps=sizes.startup_reps, with_run=with_run, before=before)
    if "sweep" in only:
        sweep.measure(
            ses,
            res,
            10000,
            n_loop=sizes.sweep_loop,
            n_hydra=1000,
            reps=sizes.sweep_reps,
            hydra_reps=1 if hydra else 0,
            before=before,
        )
    if "status" in only:
        big_store.measure(ses, res, sizes.status_sizes, reps=sizes.status_reps, small_only=sizes.status_small)
    if "report" in only:
        report_logs.measure(ses, res, *sizes.report_logs, reps=sizes.report_reps)
    if "load" in only:
        controller_load.measure(ses, res, 1000, watch_s=sizes.watch_s, job_reps=sizes.job_reps)
    if "crash" in only:
        crash.measure(ses, res, reps=2, hang_reps=1, cap=60)
    if "launch" in only:
        launch.measure(ses, res, pairs=4, before=before)
    if "code" in only:
        code_freeze.measure(ses, res, reps=sizes.code_reps)


def _newer(ses: Session, res: Results, newer: str) -> None:
    """The headline rows again on the newer test cluster: rows of their own; the figures (the findings and the
    README's table) stay 22.05's, with the newer cluster's 10,000-run sweep beside them."""
    ses.cancel_all()
    kept = dict(res.figures)
    ses.use_slurm(res, newer)
    log(f"the headline rows again on Slurm {newer}")
    with_run = submit_command.measure(ses, res, reps=5, before=None)
    startup.measure(ses, res, reps=7, with_run=with_run)
    sweep.measure(ses, res, 10000, n_loop=1000, n_hydra=1000, reps=1, hydra_reps=0)
    big_store.measure(ses, res, (10000,), reps=3)
    controller_load.measure(ses, res, 1000, watch_s=0, job_reps=0)
    ses.use_slurm(res, "22.05")
    if "sweep10000" in res.figures:
        kept["sweep10000_newer"] = res.figures["sweep10000"]
        kept["newer"] = newer
    res.figures = kept


def _write(res: Results, args: argparse.Namespace, started: float, load_before: str) -> None:
    """RESULTS.md (--out), and the README's table after a full run into the default file."""
    text = report(res, args.quick, started, machine(res), load_before)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        log(f"wrote {args.out}")
    if not args.quick and args.out == RESULTS_MD and not args.only:
        if update_readme(REPO / "README.md", headlines(res.figures)):
            log("wrote the README's Benchmarks table")


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    quick = args.quick
    only = set((args.only or (QUICK_SECTIONS if quick else ",".join(SECTIONS))).split(","))
    hydra = "sweep" in only and not quick
    slurm = bool(only - NO_SLURM)
    if slurm:
        _install(hydra)
    started = time.time()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    newer = args.newer if "newer" in only and args.newer else ""
    if slurm:
        _start_clusters(newer)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    ses, res = Session.start(), Results()
    before = Before.checkout(args.before, ses) if args.before and not quick and slurm else None
    try:
        _measure(ses, res, only, QUICK if quick else FULL, hydra, before)
        if newer:
            _newer(ses, res, newer)
    finally:
        if slurm:
            ses.cancel_all()
        if before is not None:
            before.remove()
        ses.close()
    _write(res, args, started, load_before)
    return 0
