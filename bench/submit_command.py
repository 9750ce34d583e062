"""Section 3, the submit command: `danlu submit` of one run and of a 10-run sweep, where the time goes
(DANLU_TIMINGS: launcher/timings.py), against sbatch of the same script and the imports a submit cannot avoid."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench.paths import DANLU, PYTHON, REPO
from bench.results import Results, Row, fmt
from bench.session import Before, Session
from bench.shell import array_ids, cancel, log, sh, slurm_calls, timed

SUBMIT = ["submit", "experiment=tiny_dpo", "cluster=testcluster", "resources.extra_sbatch=[--hold]", "--json"]
# the phases of a submit as launcher/timings.py records them, each with how its row names it
PHASES = {
    "start": "interpreter start + the CLI's import",
    "imports": "imports of the verb (planner, store)",
    "composition": "Hydra: override parsing, composition (its imports too)",
    "checks": "checks (shape, files, program flags)",
    "cluster facts": "cluster facts (cached an hour)",
    "planning and rendering": "planning and rendering (jinja)",
    "git": "git state of the workdir",
    "store": "store (SQLite)",
    "folders": "folders",
    "pickles": "pickles (submitit, cloudpickle)",
    "sbatch": "sbatch",
    "rest": "the rest (printing, exit)",
}
TIMED_PHASES = [k for k in PHASES if k not in ("start", "rest")]  # the ones danlu's timings name


def _one_submit(env: Dict[str, str], extra: List[str], phases: Dict[str, List[float]]) -> Tuple[float, float, str]:
    """One timed submit (its jobs cancelled), its phases added to `phases`: (wall, CPU, its first run)."""
    timings = Path(env["DANLU_BENCH_ROOT"]) / "timings.json"
    t0 = time.time()
    wall, cpu, done = timed([DANLU, *SUBMIT, *extra], env=dict(env, DANLU_TIMINGS=str(timings)), cwd=REPO)
    out = json.loads(done.stdout)
    cancel(array_ids(out["runs"]))
    t = json.loads(timings.read_text())
    phases["start"].append(t["entered"] - t0)
    for k in TIMED_PHASES:
        phases[k].append(t["phases"].get(k, 0.0))
    phases["rest"].append(wall - (t["entered"] - t0) - sum(t["phases"].values()))
    return wall, cpu, out["runs"][0]["run"]


def _submits(res: Results, env: Dict[str, str], label: str, extra: List[str], reps: int) -> str:
    """`reps` timed submits of one kind, a row for them and one per phase; returns the one run's script."""
    phases: Dict[str, List[float]] = {k: [] for k in PHASES}
    total = res.add(Row("3", f"`danlu submit`, {label} (held)", "danlu submit"))
    script = ""
    for _ in range(reps):
        wall, cpu, run = _one_submit(env, extra, phases)
        total.samples.append(wall)
        total.cpu.append(cpu)
        if label == "one run":
            shown = json.loads(sh([DANLU, "show", run, "--json"], env=env).stdout)
            script = shown.get("script_path") or script
    calls = slurm_calls(env)
    total.calls = ", ".join(f"{v // reps} {k}" for k, v in sorted(calls.items()) if k != "sacct" and k != "squeue")
    for k, xs in phases.items():
        res.add(Row("3", "", f"  of which {PHASES[k]}", samples=xs))
    res.figures[f"submit_{label}"] = total.median
    res.figures[f"submit_{label}_composition"] = statistics.median(phases["composition"])
    res.figures[f"submit_{label}_start"] = statistics.median(phases["start"])
    if label == "one run":
        res.target(
            f"`danlu submit` of one run < 0.25 s median ({res.version})",
            f"{fmt(total.median)} s median ({fmt(total.best)} min)",
            total.median < 0.25,
        )
    return script


def _before(ses: Session, res: Results, before: Before, reps: int) -> None:
    """The same one-run submit by danlu at the commit before this round."""
    benv = dict(ses.private_env("submit-cmd-before"), PYTHONPATH=str(before.path))
    cmd = [PYTHON, "-m", "launcher.cli", *SUBMIT]
    warm = json.loads(sh(cmd, env=benv, cwd=before.path).stdout)  # not timed: its cluster facts cached
    cancel([r["job_id"] for r in warm["runs"]])
    rb = res.add(
        Row(
            "3",
            "`danlu submit`, one run (held)",
            f"danlu at {before.label} (before this round)",
            note="python -m launcher.cli from that checkout",
        )
    )
    for _ in range(reps):
        wall, _cpu, done = timed(cmd, env=benv, cwd=before.path)
        cancel([r["job_id"] for r in json.loads(done.stdout)["runs"]])
        rb.samples.append(wall)
    res.figures["submit_one run_before"] = rb.median


def _floor(res: Results, env: Dict[str, str], reps: int) -> None:
    """The libraries a submit needs, imported and nothing else."""
    floor = res.add(
        Row(
            "3",
            "the libraries a submit needs, imported and nothing else",
            "`python -c 'import hydra, omegaconf, jinja2, submitit'`",
        )
    )
    for _ in range(reps):
        wall, _cpu, _done = timed(
            [
                PYTHON,
                "-c",
                "import hydra, omegaconf, jinja2, submitit; "
                "from hydra.core.override_parser.overrides_parser import OverridesParser",
            ],
            env=env,
        )
        floor.samples.append(wall)
    res.figures["submit_floor"] = floor.median


def _sbatch_alone(res: Results, env: Dict[str, str], script: str, reps: int) -> None:
    """`sbatch --hold` of the script danlu wrote for one run."""
    rs = res.add(Row("3", "`sbatch --hold` of the same one-run script", "sbatch"))
    for _ in range(reps):
        wall, _cpu, done = timed(["sbatch", "--hold", "--parsable", script], env=env)
        cancel([done.stdout.strip().split(";")[0]])
        rs.samples.append(wall)
    res.ratio(
        "3",
        f"submit one run ({res.version}): danlu {fmt(res.figures['submit_one run'])} s vs sbatch of its "
        f"script {fmt(rs.median)} s (medians)",
    )
    res.figures["sbatch_script"] = rs.median


def measure(ses: Session, res: Results, reps: int, before: Optional[Before] = None) -> Dict[str, str]:
    """`danlu submit` of one run and of a 10-run sweep (held, cancelled), where the time goes, next to `sbatch` of
    the same script. Returns the env and a run id for section 4."""
    log(f"3. the submit command: one run and a 10-run sweep, {reps} times each, with the time of each phase")
    env = ses.private_env("submit-cmd")
    first = json.loads(sh([DANLU, *SUBMIT], env=env, cwd=REPO).stdout)  # not timed: the cluster's facts cached
    run_id = first["runs"][0]["run"]
    cancel([r["job_id"] for r in first["runs"]])
    slurm_calls(env)
    script = _submits(res, env, "one run", [], reps)
    _submits(res, env, "a 10-run sweep", ["-m", "args.seed=range(0,10)"], reps)
    if before is not None:
        _before(ses, res, before, reps)
    _floor(res, env, reps)
    if script and Path(script).exists():
        _sbatch_alone(res, env, script, reps)
    return {"env": json.dumps(env), "run": run_id}
