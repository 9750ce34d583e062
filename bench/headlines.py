"""The README's Benchmarks table: the headline figures of a run, side by side with the alternative, one row per
topic measured; and the rewrite of that table between the README's two markers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from bench.results import fmt

Figures = Dict[str, Any]
Headline = Tuple[str, str, str]  # (what, danlu, the alternative)
START, END = "<!-- bench/run.py writes this table -->", "<!-- end of the table bench/run.py writes -->"


def _sweep(f: Figures) -> Optional[Headline]:
    if "sweep10000" not in f:
        return None
    alt = [
        f"a shell loop {fmt(f['sweep10000_loop'])} s ({f['sweep10000_loop'] / f['sweep10000']:.0f}x), 10,000 "
        f"sbatch calls" + (" (1,000 measured, x10)" if f["loop_n"] != 10000 else "")
    ]
    if "sweep10000_hydra" in f:
        alt.insert(
            0,
            f"hydra-submitit-launcher {fmt(f['sweep10000_hydra'])} s "
            f"({f['sweep10000_hydra'] / f['sweep10000']:.0f}x; {int(f['hydra_n']):,} measured, x10), then "
            "it blocks until every job ends",
        )
    return (
        "10,000-run sweep, until Slurm accepted every job",
        f"{fmt(f['sweep10000'])} s, 10 sbatch calls",
        "; ".join(alt),
    )


def _status_100000(f: Figures) -> Optional[Headline]:
    if "status100000_steady" not in f:
        return None
    return (
        "`danlu status --all`, 100,000 runs in the store",
        f"{fmt(f['status100000_steady'])} s ({fmt(f['status100000_first'])} s on the first look after they ended)",
        f"one raw `sacct` for the same jobs: {fmt(f['status100000_sacct'])} s",
    )


def _status_10000(f: Figures) -> Optional[Headline]:
    if "status10000_steady" not in f:
        return None
    return (
        "`danlu status --all`, 10,000 runs",
        f"{fmt(f['status10000_steady'])} s ({fmt(f['status10000_first'])} s first look)",
        f"one raw `sacct`: {fmt(f['status10000_sacct'])} s",
    )


def _report(f: Figures) -> Optional[Headline]:
    if "report_cold" not in f:
        return None
    return (
        "`danlu report`, 100 runs x 10,000 steps",
        f"{fmt(f['report_warm'])} s ({fmt(f['report_cold'])} s the first time)",
        f"a notebook's regex loop over the logs: {fmt(f['report_loop'])} s",
    )


def _submit(f: Figures) -> Optional[Headline]:
    if "submit_one run" not in f:
        return None
    return (
        "`danlu submit`, one run",
        f"{fmt(f['submit_one run'])} s",
        f"`sbatch` of the same script: {fmt(f.get('sbatch_script', float('nan')))} s",
    )


def _help(f: Figures) -> Optional[Headline]:
    if "help" not in f:
        return None
    return (
        "`danlu --help`",
        f"{fmt(f['help'])} s",
        f"`python -c pass`: {fmt(f['pass'])} s ({f['help'] / f['pass']:.1f}x)",
    )


def _refresh_rpcs(f: Figures) -> Optional[Headline]:
    if "rpc_refresh" not in f:
        return None
    alt = f"`watch squeue --me`: {f['rpc_watch_squeue_min']:g} a minute" if "rpc_watch_squeue_min" in f else ""
    mine = f"{f['rpc_refresh']:g} per refresh" + (
        f", {f['rpc_watch_min']:g} a minute of --watch" if "rpc_watch_min" in f else ""
    )
    return ("slurmctld RPCs, `danlu status` with 1,000 active runs", mine, alt)


def _submit_rpcs(f: Figures) -> Optional[Headline]:
    if "rpc_submit" not in f:
        return None
    return (
        "slurmctld RPCs, submitting 1,000 runs",
        f"{f['rpc_submit']:g}",
        f"a shell loop of sbatch: {f.get('rpc_submit_loop', float('nan')):g}",
    )


def _job_rpcs(f: Figures) -> Optional[Headline]:
    if "rpc_job_own" not in f:
        return None
    return (
        "slurmctld RPCs of a 2-node job's own (besides srun's)",
        f"{f['rpc_job_own']:g}",
        f"hand-written sbatch: {f['rpc_job_own_hand']:g}",
    )


def _crash(f: Figures) -> Optional[Headline]:
    if "crash_nccl" not in f:
        return None
    return (
        "2-node job, a rank dies, the others blocked in a collective (as NCCL): crash -> end of job",
        f"{fmt(f['crash_nccl'])} s",
        f"hand-written srun + accelerate: "
        f"{'still running when stopped at ' if f['crash_nccl_capped'] else ''}{fmt(f['crash_nccl_hand'])} s",
    )


def _launch(f: Figures) -> Optional[Headline]:
    if "launch" not in f:
        return None
    return (
        "submit -> first training step, 2 nodes x 2 ranks",
        f"{fmt(f['launch'])} s",
        f"hand-written script {fmt(f['launch_hand'])} s ({f['launch'] / f['launch_hand']:.2f}x)",
    )


TOPICS: List[Callable[[Figures], Optional[Headline]]] = [
    _sweep,
    _status_100000,
    _status_10000,
    _report,
    _submit,
    _help,
    _refresh_rpcs,
    _submit_rpcs,
    _job_rpcs,
    _crash,
    _launch,
]


def headlines(f: Figures) -> str:
    """The table, in markdown: a row for each topic this run measured."""
    rows = [row for row in (topic(f) for topic in TOPICS) if row is not None]
    out = ["| | danlu | the alternative |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out) + "\n"


def update_readme(path: Path, text: str) -> bool:
    """Put `text` between the README's bench markers; False when they are missing."""
    readme = path.read_text()
    if START not in readme or END not in readme:
        return False
    head, rest = readme.split(START, 1)
    path.write_text(head + START + "\n" + text + rest[rest.index(END) :])
    return True
