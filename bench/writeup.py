"""RESULTS.md: the machine and versions measured on, one table per Slurm version, the ratios, the targets, the
notes, the README's headline table and the findings -- all from one run's Results."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Dict, List

from bench.findings import ROUND_ONE, findings
from bench.headlines import headlines
from bench.paths import REPO
from bench.results import Results, fmt
from bench.shell import sh

DISTS = ("hydra-core", "hydra-submitit-launcher", "submitit", "torch", "accelerate")


def _first(path: str, prefix: str) -> str:
    """The first line of a /proc file that starts with `prefix`, after it ('' when none or unreadable)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :]
    except OSError:
        pass
    return ""


def _versions() -> str:
    from importlib.metadata import version

    out = []
    for dist in DISTS:
        try:
            out.append(f"{dist} {version(dist)}")
        except Exception:  # noqa: BLE001 -- not installed
            out.append(f"{dist} (not installed)")
    return ", ".join(out)


def machine(res: Results) -> Dict[str, str]:
    """What the run was measured on: cores, CPU, memory, load now, library versions, commit, Slurm versions."""
    mem = _first("/proc/meminfo", "MemTotal:")
    cpu = _first("/proc/cpuinfo", "model name")
    commit = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    dirty = sh(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", "launcher"], check=False
    ).stdout.strip()
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu.split(":", 1)[1].strip() if ":" in cpu else "",
        "memory": f"{int(mem.split()[0]) / 1024 / 1024:.1f} GiB" if mem else "",
        "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": _versions(),
        "commit": commit + (" (launcher/ modified)" if dirty else ""),
        "slurm": ", ".join(f"{v}: `{res.slurm_seen[v]}`" for v in res.slurm_seen),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def table(res: Results, version: str) -> str:
    out = ["| # | measurement | tool | min | median | Slurm calls | note |", "|---|---|---|---|---|---|---|"]
    for r in res.rows:
        if r.version != version:
            continue
        ge = ">= " if r.at_least else ""
        cpu = f" (CPU {fmt(statistics.median(r.cpu))} s)" if r.cpu else ""
        n = f" (n={len(r.samples)})" if len(r.samples) > 1 else ""
        out.append(
            f"| {r.section} | {r.what} | {r.tool} | {ge}{fmt(r.best, r.unit)} | {ge}{fmt(r.median, r.unit)}{cpu} "
            f"| {r.calls} | {r.note}{n} |"
        )
    return "\n".join(out)


def _head(quick: bool, started: float, info: Dict[str, str], load_before: str) -> List[str]:
    lines = [
        "# danlu benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(started))} by `python bench/run.py"
        f"{' --quick' if quick else ''}` in {(time.time() - started) / 60:.1f} min, all in this one run; "
        "this file is written by it.",
        "",
        f"- machine: {info['cores']} cores ({info['cpu']}), {info['memory']} memory, Linux {info['kernel']}, "
        f"Python {info['python']}",
        f"- danlu at commit {info['commit']}; {info['versions']}",
        f"- Slurm: {info['slurm']} (the project's test clusters, tests/cluster/up.sh VERSION: slurmctld, 3 "
        f"slurmd, slurmdbd on this machine)",
        f"- load average (1, 5, 15 min) at start: {load_before}; at end: {info['load']}. Times are wall clock "
        "(seconds); CPU is user+sys of the process and its children; RPC rows count slurmctld RPCs (sdiag).",
        "",
        "Sections: (1) scale: a 10,000-run sweep, status with 10,000 and 100,000 runs, report over 100 runs x "
        "10,000 steps; (2) controller load, from sdiag; (3) the submit command and where its time goes; (4) "
        "start-up of every command; (5) a 2-node job's crash -> end and launch overhead (round one); (6) the code "
        "snapshot a submit freezes, next to git archive and rsync (this machine's disk, no Slurm).",
        "",
    ]
    if quick:
        lines += ["**--quick**: the headline rows only, smaller and fewer (see each row).", ""]
    return lines


def report(res: Results, quick: bool, started: float, info: Dict[str, str], load_before: str) -> str:
    """RESULTS.md's text. started: when the measurements began; info: machine(); load_before: the load then."""
    lines = _head(quick, started, info, load_before)
    for v in dict.fromkeys(r.version for r in res.rows):
        lines += [f"## Results on Slurm {v}", "", table(res, v), ""]
    for title, block in res.blocks:
        lines += [f"## {title}", "", block, ""]
    lines += ["## Ratios", ""] + [f"- ({sec}) {text}" for sec, text in res.ratios]
    lines += [
        "",
        "## Targets (issue 18, and round one's still held)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for t, m, ok in res.targets:
        lines.append(f"| {t} | {m} | {'yes' if ok else ('n/a' if ok is None else '**no**')} |")
    if res.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in res.notes]
    lines += ["", "## Headlines (the README's table)", "", headlines(res.figures), findings(res.figures), ROUND_ONE]
    return "\n".join(lines).rstrip() + "\n"
