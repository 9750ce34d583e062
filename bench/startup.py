"""Section 4: start-up of every command (--help, status, logs, show, cluster) next to squeue and `python -c pass`,
interleaved so that load spikes hit every case alike."""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

from bench.paths import DANLU, PYTHON, REPO
from bench.results import Results, Row, fmt
from bench.session import Before, Session
from bench.shell import log, sh, slurm_calls, timed

Case = Tuple[str, List[str], Dict[str, str]]  # (label, command, env)
PASS, SQUEUE, HELP = "`python -c pass` (the interpreter alone)", "`squeue`", "`danlu --help`"


def _cases(empty: Dict[str, str], with_run: Optional[Dict[str, str]], before: Optional[Before]) -> List[Case]:
    """The commands timed, each with its env: `empty` a private store of none; with_run section 3's, with a run."""
    cases: List[Case] = [
        (PASS, [PYTHON, "-c", "pass"], empty),
        (SQUEUE, ["squeue"], empty),
        (HELP, [DANLU, "--help"], empty),
        ("`danlu status` (empty store)", [DANLU, "status"], empty),
    ]
    if with_run:
        full = json.loads(with_run["env"])
        cases += [
            ("`danlu logs RUN` (a run that never started)", [DANLU, "logs", with_run["run"]], full),
            ("`danlu show RUN`", [DANLU, "show", with_run["run"]], full),
        ]
    cases += [("`danlu cluster` (sinfo, squeue)", [DANLU, "cluster"], empty)]
    if before is not None:
        for verb in ("--help", "status"):
            cases += [
                (
                    f"`python -m launcher.cli {verb}` at {before.label} (before this round)",
                    [PYTHON, "-m", "launcher.cli", verb],
                    dict(empty, PYTHONPATH=str(before.path)),
                ),
                (
                    f"`python -m launcher.cli {verb}` now",
                    [PYTHON, "-m", "launcher.cli", verb],
                    dict(empty, PYTHONPATH=str(REPO)),
                ),
            ]
    return cases


def _summarize(res: Results, rows: Dict[str, Row], cases: List[Case], before: Optional[Before]) -> None:
    p, q, h = rows[PASS], rows[SQUEUE], rows[HELP]
    others = [label for label, _c, _e in cases[3:] if "launcher.cli" not in label]
    res.ratio(
        "4",
        f"start-up ({res.version}): `danlu --help` {h.median / p.median:.1f}x `python -c pass`, "
        f"{h.median / q.median:.1f}x `squeue`; "
        + ", ".join(f"{label.split('`')[1]} {rows[label].median / q.median:.1f}x" for label in others)
        + " `squeue` (medians)",
    )
    res.target(
        f"`danlu --help` <= 2.5x `python -c pass` in the same venv ({res.version})",
        f"{h.median / p.median:.2f}x ({fmt(h.median)} vs {fmt(p.median)} s, medians)",
        h.median <= 2.5 * p.median,
    )
    res.figures["help"], res.figures["pass"] = h.median, p.median
    res.figures["status_empty"], res.figures["squeue"] = rows["`danlu status` (empty store)"].median, q.median
    if before is not None:
        for verb, key in (("--help", "help_m"), ("status", "status_m")):
            then = rows[f"`python -m launcher.cli {verb}` at {before.label} (before this round)"].median
            now = rows[f"`python -m launcher.cli {verb}` now"].median
            res.figures[f"{key}_before"], res.figures[f"{key}_now"] = then, now
            res.ratio(
                "4", f"`{verb.lstrip('-')}` now / before this round ({before.label}): {now / then:.2f}x (medians)"
            )


def measure(
    ses: Session, res: Results, reps: int, with_run: Optional[Dict[str, str]], before: Optional[Before] = None
) -> None:
    log(f"4. start-up of every command, {reps} times each")
    empty = ses.private_env("startup")
    cases = _cases(empty, with_run, before)
    rows: Dict[str, Row] = {}
    for label, cmd, env in cases:
        rows[label] = res.add(Row("4", "start-up" if not rows else "", label))
        sh(cmd, env=env, check=False)  # once before measuring: bytecode written (pip does it at install), store made
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        res.notes.append(
            "PYTHONDONTWRITEBYTECODE is set in this shell; the bench unsets it for the commands it times, "
            "as a pip-installed danlu has its bytecode compiled (with it set, every start compiles danlu's "
            "modules)"
        )
    for _ in range(reps):  # interleaved, so load spikes hit every case alike
        for label, cmd, env in cases:
            wall, cpu, done = timed(cmd, env=env, check=False)
            rows[label].samples.append(wall)
            rows[label].cpu.append(cpu)
            rows[label].note = "" if done.returncode == 0 else f"exit {done.returncode}"
    for _label, _cmd, env in cases:
        slurm_calls(env)
    _summarize(res, rows, cases, before)
