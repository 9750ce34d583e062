"""Section 1, scale: a 10,000-run sweep until Slurm accepted every job -- danlu (and danlu at the commit before this
round), a shell loop of sbatch and hydra-submitit-launcher; the last two on fewer runs and extrapolated, marked."""

from __future__ import annotations

import json
import os
import secrets
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench.paths import BENCH, DANLU, PYTHON, REPO
from bench.results import Results, Row, fmt
from bench.session import Before, Session
from bench.shell import array_ids, cancel, log, settle, sh, shim_calls, slurm_calls, squeue_count, timed

SUBMIT_SWEEP = [
    "submit",
    "-m",
    "experiment=tiny_dpo",
    "cluster=testcluster",
    "args.seed=range(0,{n})",
    "resources.extra_sbatch=[--hold]",
    "--json",
]


def submit_argv(n: int) -> List[str]:
    """`danlu submit`'s arguments for an n-run sweep of held jobs."""
    return [a.format(n=n) for a in SUBMIT_SWEEP]


def _hydra(ses: Session, res: Results, n: int, shim: Path, shim_log: Path) -> Tuple[float, int]:
    """hydra-submitit-launcher on n runs: (wall until the last sbatch returned, its sbatch calls). It blocks until
    the jobs end, so the clock stops when Slurm accepted them all; it is killed then."""
    env = ses.private_env("submit-hydra", trace=False, shim=shim)
    name = f"benchhydra{secrets.token_hex(3)}"
    sweep_dir = Path(env["DANLU_BENCH_ROOT"]) / "sweep"
    t0 = time.time()
    proc = subprocess.Popen(
        [
            PYTHON,
            "app.py",
            "-m",
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=debug-4090-01",
            f"point=range(0,{n})",
            "+hydra.launcher.additional_parameters.hold=true",
            f"hydra.sweep.dir={sweep_dir}",
            f"hydra.job.name={name}",
        ],
        cwd=BENCH / "hydra_app",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(sweep_dir.parent / "hydra.err", "w"),
        start_new_session=True,
    )
    accepted, deadline = 0, t0 + 900
    while time.time() < deadline:
        accepted = squeue_count(name=name)
        if accepted >= n or proc.poll() is not None:
            break
        time.sleep(0.25)
    still_blocking = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    hyd_ids = sorted({i.split("_")[0] for i in sh(["squeue", "-h", "-r", "-n", name, "-o", "%i"]).stdout.split()})
    ses.submitted.extend(hyd_ids)
    cancel(hyd_ids, arrays=True)
    calls, last_end = shim_calls(shim_log)
    if accepted < n or last_end is None:
        raise RuntimeError(
            f"hydra-submitit-launcher: {accepted} of {n} jobs accepted\n"
            f"{(sweep_dir.parent / 'hydra.err').read_text()[-2000:]}"
        )
    if not still_blocking:
        res.notes.append("hydra-submitit-launcher exited before its jobs ended (unexpected)")
    return last_end - t0, calls


def _shell_loop(ses: Session, n: int, shim: Path, shim_log: Path) -> Tuple[float, int]:
    """A shell loop of n `sbatch --hold --wrap true`: (wall, its sbatch calls)."""
    env = ses.private_env("submit-loop", trace=False, shim=shim)
    name = f"benchloop{secrets.token_hex(3)}"
    wall, _cpu, done = timed(
        [
            "bash",
            "-c",
            f"for i in $(seq {n}); do sbatch --hold --parsable -J {name} "
            "-p debug-4090-01 -o /dev/null --wrap true || exit 1; done",
        ],
        env=env,
    )
    loop_ids = done.stdout.split()
    ses.submitted.extend(loop_ids)
    cancel(loop_ids)
    calls, _ = shim_calls(shim_log)
    if len(loop_ids) != n:
        raise RuntimeError(f"shell loop: {len(loop_ids)} of {n} accepted")
    return wall, calls


def danlu_sweep(
    ses: Session, res: Results, n: int, env: Dict[str, str], shim_log: Path, cwd: Path = REPO
) -> Tuple[float, float, int, List[str]]:
    """`danlu submit -m` of an n-run sweep of held jobs: (wall until Slurm accepted all, the command's own wall,
    sbatch calls, array job ids); the jobs are cancelled. Where its time went goes to res.sweep_phases."""
    # not timed: the cluster's facts read and cached in this private home, as any submit of the hour before left them
    sh([PYTHON, "-c", "from launcher.cluster_facts import cached; cached('testcluster')"], env=env, cwd=cwd)
    timings = Path(env["DANLU_BENCH_ROOT"]) / "sweep-timings.json"  # where its time goes (launcher/timings.py)
    t0 = time.time()
    wall, _cpu, done = timed([DANLU, *submit_argv(n)], env=dict(env, DANLU_TIMINGS=str(timings)), cwd=cwd)
    t = json.loads(timings.read_text())
    parts = dict(
        t["phases"],
        **{
            "start (interpreter, imports)": t["entered"] - t0,
            "after the last phase (printing, exit)": t0 + wall - t["exited"],
        },
    )
    res.sweep_phases.append(", ".join(f"{k} {fmt(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])))
    ids = array_ids(json.loads(done.stdout)["runs"])
    ses.submitted.extend(ids)
    accepted = squeue_count(ids)
    ncalls, last_end = shim_calls(shim_log)
    cancel(ids, arrays=True)
    if accepted != n or last_end is None:
        raise RuntimeError(f"danlu submit: {accepted} of {n} jobs in the queue")
    slurm_calls(env)
    return last_end - t0, wall, ncalls, ids


def _before_sweep(ses: Session, before: Before, n: int, shim: Path, shim_log: Path) -> float:
    """The same sweep by danlu at the commit before this round: wall until Slurm accepted all."""
    benv = ses.private_env("submit-before", shim=shim)
    benv["PYTHONPATH"] = str(before.path)
    t0 = time.time()
    done = sh([PYTHON, "-m", "launcher.cli", *submit_argv(n)], env=benv, cwd=before.path, timeout=900)
    ids = array_ids(json.loads(done.stdout)["runs"])
    ses.submitted.extend(ids)
    _n, last_end = shim_calls(shim_log)
    cancel(ids, arrays=True)
    return last_end - t0


@dataclass
class _Sweep:
    """The rows of one sweep measurement, the sbatch shim every tool submits through, and the counts the summary
    is written from."""

    n: int
    n_loop: int
    n_hydra: int
    shim: Tuple[Path, Path]  # (PATH dir, its log): Session.make_shim
    danlu: Row
    before: Optional[Row]
    loop: Row
    hydra: Row
    calls: Dict[str, List[int]] = field(default_factory=lambda: {"d": [], "h": [], "l": []})
    danlu_wall: List[float] = field(default_factory=list)

    @classmethod
    def start(cls, ses: Session, res: Results, n: int, n_loop: int, n_hydra: int, before: Optional[Before]) -> "_Sweep":
        shim = ses.make_shim("submit")
        rd = res.add(
            Row("1", f"submit a {n:,}-run sweep (held); wall time until Slurm accepted all", "danlu submit -m")
        )
        rb = res.add(Row("1", "", f"danlu at {before.label} (before this round)")) if before else None
        loop = "shell loop of `sbatch --hold --wrap true`"
        loop += f", {n_loop:,} calls x {n / n_loop:g} (extrapolated)" if n_loop != n else ""
        rl = res.add(Row("1", "", loop))
        hydra = "hydra-submitit-launcher (-m)"
        hydra += f", {n_hydra:,} runs x {n / n_hydra:g} (extrapolated)" if n_hydra != n else ""
        note = "time until Slurm accepted all; it then blocks until every job ends (killed here)"
        rh = res.add(Row("1", "", hydra, note=note))
        return cls(n, n_loop, n_hydra, shim, rd, rb, rl, rh)

    def repeat(self, ses: Session, res: Results, rep: int, hydra: bool, before: Optional[Before]) -> None:
        """One repetition: danlu (and, the first time, danlu before this round), hydra-submitit, the shell loop."""
        shim, shim_log = self.shim
        settle()
        env = ses.private_env("submit-danlu", shim=shim)
        accepted, wall, ncalls, _ids = danlu_sweep(ses, res, self.n, env, shim_log)
        self.danlu.samples.append(accepted)
        self.danlu_wall.append(wall)
        self.calls["d"].append(ncalls)
        if before is not None and self.before is not None and rep == 0:
            settle()
            self.before.samples.append(_before_sweep(ses, before, self.n, shim, shim_log))
        log(f"   waited {settle():.0f}s for the controller to digest the cancelled jobs")
        k_loop, k_hydra = self.n / self.n_loop, self.n / self.n_hydra
        if hydra:
            hw, hc = _hydra(ses, res, self.n_hydra, shim, shim_log)
            self.hydra.samples.append(hw * k_hydra)
            self.calls["h"].append(int(hc * (k_hydra if hc > 1 else 1)))
        settle()
        lw, lc = _shell_loop(ses, self.n_loop, shim, shim_log)
        self.loop.samples.append(lw * k_loop)
        self.calls["l"].append(int(lc * k_loop))
        danlu, loop = self.danlu.samples[-1], self.loop.samples[-1]
        log(
            f"   rep {rep + 1}: danlu {danlu:.2f}s ({ncalls} sbatch), loop {loop:.1f}s"
            + (f", hydra {self.hydra.samples[-1]:.1f}s" if hydra else "")
        )

    def summarize(self, res: Results) -> None:
        """Calls and notes of the rows, where the median danlu submit went, the ratio, the target, the figures."""
        n, rd, rb, rl, rh, calls = self.n, self.danlu, self.before, self.loop, self.hydra, self.calls
        rd.calls = f"{max(calls['d'])} sbatch"
        rd.note = (
            f"the command itself returns after {fmt(statistics.median(self.danlu_wall))} s (median); the cluster's "
            "facts cached (as a submit within the hour leaves them)"
        )
        mid = sorted(range(len(rd.samples)), key=lambda k: rd.samples[k])[len(rd.samples) // 2]  # the median rep's
        where = res.sweep_phases[-len(rd.samples) :][mid]
        res.add(
            Row("1", "", f"  where the median danlu submit of {n:,} runs goes", samples=[rd.samples[mid]], note=where)
        )
        res.figures[f"sweep{n}_parts"] = where
        rh.calls = f"{max(calls['h'])} sbatch" if calls["h"] else ""
        rl.calls = f"{max(calls['l'])} sbatch"
        res.ratio(
            "1",
            f"sweep of {n:,}: shell loop / danlu = {rl.median / rd.median:.1f}x"
            + (f", hydra-submitit / danlu = {rh.median / rd.median:.1f}x" if rh.samples else "")
            + (f", danlu before this round / now = {rb.median / rd.median:.1f}x" if rb else "")
            + " (medians; extrapolated where marked)",
        )
        res.target(
            f"{n:,}-run sweep accepted in < 5 s with <= {max(1, n // 1000)} sbatch calls ({res.version})",
            f"{fmt(rd.median)} s median, {max(calls['d'])} sbatch",
            rd.median < 5 and max(calls["d"]) <= max(1, n // 1000) if n >= 10000 else None,
        )
        res.figures[f"sweep{n}"] = rd.median
        res.figures[f"sweep{n}_samples"] = list(rd.samples)
        res.figures[f"sweep{n}_loop"], res.figures["loop_n"] = rl.median, self.n_loop
        if rh.samples:
            res.figures[f"sweep{n}_hydra"], res.figures["hydra_n"] = rh.median, self.n_hydra
        if rb is not None:
            res.figures[f"sweep{n}_before"] = rb.median


def measure(
    ses: Session,
    res: Results,
    n: int,
    n_loop: int,
    n_hydra: int,
    reps: int,
    hydra_reps: int,
    before: Optional[Before] = None,
) -> None:
    """A sweep of n runs: danlu (and, with `before`, danlu at the commit before this round, once), a shell loop of
    n_loop sbatch calls and hydra-submitit-launcher on n_hydra runs; both scaled to n when smaller (marked)."""
    log(
        f"1. submitting a {n:,}-run sweep: danlu {reps} times, a shell loop of {n_loop:,} sbatch {reps} times, "
        f"hydra-submitit-launcher on {n_hydra:,} runs {hydra_reps} times"
    )
    sweep = _Sweep.start(ses, res, n, n_loop, n_hydra, before)
    for rep in range(reps):
        sweep.repeat(ses, res, rep, rep < hydra_reps, before)
    sweep.summarize(res)
