#!/usr/bin/env python3
"""danlu against the alternatives, side by side, measured in one run on the project's test Slurm clusters.

    python bench/run.py            # everything (~30 min), writes bench/RESULTS.md; installs .venv and the bench
                                   # extra (hydra-submitit-launcher, the alternative of section 1) when missing
    python bench/run.py --quick    # the headline rows only (under 3 minutes; 22.05, no hydra-submitit-launcher)
    python bench/run.py --only startup,submit [--out FILE]

Starts the test clusters (tests/cluster/up.sh 22.05 and 24.11, idempotent), then measures

  1. scale: a 10,000-run sweep until Slurm accepted every job (danlu vs a shell loop of sbatch vs
     hydra-submitit-launcher, the last two on 1,000 runs and extrapolated, marked), `danlu status --all` with
     10,000 and 100,000 runs in the store (first look, steady) next to one raw sacct for the same jobs, and
     `danlu report` over 100 runs x 10,000 steps next to a notebook's regex loop;
  2. controller load: slurmctld RPCs counted by sdiag (bench/status_rpcs.py, bench/job_rpcs.py) per submit of a
     1,000-run sweep, per status refresh with 1,000 active runs, per minute of --watch, per 2-node job -- next to
     a shell loop, `watch squeue`, submitit's polling and a hand-written script;
  3. the submit command: one run and a 10-run sweep, and where the time goes (DANLU_TIMINGS: imports,
     composition, checks, rendering, store, pickles, sbatch), against sbatch of the same script;
  4. start-up of every command (--help, status, logs, show, cluster) next to squeue and `python -c pass`;
  5. round one's 2-node job: crash -> end of job, and submit -> first step, danlu vs a hand-written script;

and the headline rows again on the 24.11 test cluster (one table per version). The code of the commit before
this round (--before) is measured beside the final code where a finding needs a before and after. Every
measurement has its own private store and runs dir; every job submitted is cancelled. The findings at the end
of RESULTS.md are written from the numbers of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
VENV_BIN = REPO / ".venv" / "bin"

# the bench imports launcher (store population) and runs danlu from the project's venv
if (
    Path(sys.prefix).resolve() != (REPO / ".venv").resolve()
    and (VENV_BIN / "python").exists()
    and not os.environ.get("DANLU_BENCH_REEXEC")
):
    os.environ["DANLU_BENCH_REEXEC"] = "1"
    os.execv(str(VENV_BIN / "python"), [str(VENV_BIN / "python"), *sys.argv])

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
import slurm_helpers  # noqa: E402  -- the tests' node-state waits

REAL_SBATCH = shutil.which("sbatch") or "/usr/bin/sbatch"
BEFORE = "0f81f03"  # main before issue 18's round two: measured beside the final code (--before)
SUBMITTED: List[str] = []  # every Slurm job id this run submitted: cancelled at the end whatever happens
_TMP = Path(tempfile.mkdtemp(prefix="danlu-bench-", dir="/tmp"))  # /tmp: bound into the newer clusters' roots
ACTIVE_STATES = {
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- results -------------------------------------------------------------------------------------------
@dataclass
class Row:
    section: str
    what: str
    tool: str
    samples: List[float] = field(default_factory=list)
    unit: str = "s"
    calls: str = ""
    note: str = ""
    at_least: bool = False  # the samples are lower bounds (a capped wait)
    cpu: List[float] = field(default_factory=list)
    version: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def best(self) -> float:
        return min(self.samples) if self.samples else float("nan")


ROWS: List[Row] = []
RATIOS: List[tuple] = []  # (section, text)
TARGETS: List[tuple] = []  # (target, measured, met)
NOTES: List[str] = []
FIGURES: Dict[str, Any] = {}  # measured numbers (and breakdowns) the findings are written from
VERSION = "22.05"  # the Slurm version the rows being added were measured on (use_slurm)
SLURM_SEEN: Dict[str, str] = {}  # version -> what its sinfo --version said


def add(row: Row) -> Row:
    row.version = row.version or VERSION
    ROWS.append(row)
    return row


def use_slurm(version: str) -> None:
    """The Slurm test cluster the following measurements talk to: 22.05 is this machine's own; a newer one's
    client commands run inside its root (tests/cluster/chroot.sh), first in PATH -- as DANLU_TEST_SLURM does."""
    global VERSION, REAL_SBATCH
    path = [p for p in os.environ["PATH"].split(":") if not p.startswith("/var/tmp/danlu-slurm-")]
    if version != "22.05":
        path.insert(0, f"/var/tmp/danlu-slurm-{version}/bin")
    os.environ["PATH"] = ":".join(path)
    VERSION = version
    REAL_SBATCH = shutil.which("sbatch") or "/usr/bin/sbatch"
    SLURM_SEEN[version] = sh(["sinfo", "--version"], check=False).stdout.strip()


def fmt(x: float, unit: str = "s") -> str:
    if x != x:  # nan
        return "-"
    if unit == "s":
        return f"{x:.3f}" if x < 1 else (f"{x:.2f}" if x < 10 else f"{x:.1f}")
    return f"{x:g}"


# ---- helpers -------------------------------------------------------------------------------------------
def sh(
    cmd: Sequence[str],
    env: Optional[Dict[str, str]] = None,
    check: bool = True,
    timeout: float = 600,
    cwd: Optional[Path] = None,
) -> subprocess.CompletedProcess:
    done = subprocess.run(
        list(cmd), capture_output=True, text=True, env=env, timeout=timeout, cwd=str(cwd) if cwd else None
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def timed(
    cmd: Sequence[str], env: Optional[Dict[str, str]] = None, check: bool = True, cwd: Optional[Path] = None
) -> tuple:
    """(wall seconds, CPU seconds of the child and its children, completed process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = sh(cmd, env=env, check=check, cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def cancel(ids: Sequence[str], arrays: bool = False) -> None:
    """scancel our own job ids. arrays: cancel each pending array as a whole (`scancel 123_[0-1000]`), which
    leaves the controller one record for it instead of one per task (MaxJobCount is 10,000, shared)."""
    ids = [f"{i}_[0-1000]" if arrays else i for i in ids if i]
    for k in range(0, len(ids), 500):
        subprocess.run(["scancel", *ids[k : k + 500]], capture_output=True)


def cancel_all() -> None:
    if SUBMITTED:
        cancel(sorted(set(SUBMITTED)))
    # The test cluster tracks a job's processes by parentage (proctrack/linuxproc): ranks blocked in a
    # collective that torch elastic left behind when the capped hand-written job was cancelled escape it.
    # A real cluster's proctrack/cgroup would kill them; here, kill what still runs from the bench's dirs.
    time.sleep(2)
    subprocess.run(["pkill", "-KILL", "-f", str(_TMP)], capture_output=True)


def private_env(name: str, trace: bool = True, shim: Optional[Path] = None) -> Dict[str, str]:
    """A private danlu home, store and runs dir (as tests/danlu_helpers.py's `danlu_env`), Slurm call trace."""
    root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_TMP))
    env = dict(os.environ)
    env.update(
        DANLU_HOME=str(root / "home"),
        DANLU_STORE=str(root / "home" / "store.sqlite"),
        DANLU_RUNS_DIR=str(root / "runs"),
        NO_COLOR="1",
        DANLU_BENCH_ROOT=str(root),
    )
    env.pop("DANLU_TRACE_SLURM", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed by pip: bytecode cached, not compiled each start
    if trace:
        env["DANLU_TRACE_SLURM"] = str(root / "slurm-calls.txt")
    env["PATH"] = ":".join(([str(shim)] if shim else []) + [str(VENV_BIN), os.environ.get("PATH", "")])
    return env


def slurm_calls(env: Dict[str, str]) -> Dict[str, int]:
    path = Path(env.get("DANLU_TRACE_SLURM", "/nonexistent"))
    counts: Dict[str, int] = {}
    if path.exists():
        for line in path.read_text().split():
            counts[line] = counts.get(line, 0) + 1
        path.unlink()
    return counts


def make_shim(name: str) -> tuple:
    """A PATH dir whose `sbatch` logs each call (start/end time, exit code), then runs the real one."""
    d = Path(tempfile.mkdtemp(prefix=f"shim-{name}-", dir=_TMP))
    logf = d / "sbatch.log"
    (d / "sbatch").write_text(
        "#!/bin/bash\n"
        f'echo "start $EPOCHREALTIME" >> {logf}\n'
        f'{REAL_SBATCH} "$@"; rc=$?\n'
        f'echo "end $EPOCHREALTIME $rc" >> {logf}\n'
        "exit $rc\n"
    )
    (d / "sbatch").chmod(0o755)
    return d, logf


def shim_calls(logf: Path) -> tuple:
    """(number of sbatch calls, time the last one returned) from a shim log; the log is reset."""
    if not logf.exists():
        return 0, None
    lines = logf.read_text().splitlines()
    logf.unlink()
    starts = [ln for ln in lines if ln.startswith("start ")]
    ends = [float(ln.split()[1]) for ln in lines if ln.startswith("end ")]
    return len(starts), (max(ends) if ends else None)


def squeue_count(job_ids: Sequence[str] = (), name: str = "") -> int:
    cmd = ["squeue", "-h", "-r", "-t", "all", "-o", "%i"]
    if job_ids:
        cmd += ["-j", ",".join(job_ids)]
    if name:
        cmd += ["-n", name]
    done = subprocess.run(cmd, capture_output=True, text=True)
    return len(done.stdout.split()) if done.returncode == 0 else 0


def job_state(job_id: str) -> str:
    done = subprocess.run(["squeue", "-h", "-j", job_id, "-t", "all", "-o", "%T"], capture_output=True, text=True)
    out = done.stdout.split()
    return out[0] if out else "GONE"


# ---- 1. submitting a sweep ------------------------------------------------------------------------------
def _loop_and_hydra(n_loop: int, n_hydra: int, hydra: bool, shim: Path, shim_log: Path) -> tuple:
    """(shell loop wall, its sbatch calls, hydra-submitit wall or None, its sbatch calls) for one repetition."""
    hydra_wall, hydra_calls = None, 0
    if hydra:  # hydra-submitit-launcher: blocks until the jobs end, so the clock stops when the last sbatch returned
        env = private_env("submit-hydra", trace=False, shim=shim)
        name = f"benchhydra{secrets.token_hex(3)}"
        sweep_dir = Path(env["DANLU_BENCH_ROOT"]) / "sweep"
        t0 = time.time()
        proc = subprocess.Popen(
            [
                str(VENV_BIN / "python"),
                "app.py",
                "-m",
                "hydra/launcher=submitit_slurm",
                "hydra.launcher.partition=debug-4090-01",
                f"point=range(0,{n_hydra})",
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
            if accepted >= n_hydra or proc.poll() is not None:
                break
            time.sleep(0.25)
        still_blocking = proc.poll() is None
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        hyd_ids = sorted({i.split("_")[0] for i in sh(["squeue", "-h", "-r", "-n", name, "-o", "%i"]).stdout.split()})
        SUBMITTED.extend(hyd_ids)
        cancel(hyd_ids, arrays=True)
        hydra_calls, last_end = shim_calls(shim_log)
        if accepted < n_hydra or last_end is None:
            raise RuntimeError(
                f"hydra-submitit-launcher: {accepted} of {n_hydra} jobs accepted\n"
                f"{(sweep_dir.parent / 'hydra.err').read_text()[-2000:]}"
            )
        hydra_wall = last_end - t0
        if not still_blocking:
            NOTES.append("hydra-submitit-launcher exited before its jobs ended (unexpected)")
    settle()
    env = private_env("submit-loop", trace=False, shim=shim)
    name = f"benchloop{secrets.token_hex(3)}"
    wall, _cpu, done = timed(
        [
            "bash",
            "-c",
            f"for i in $(seq {n_loop}); do sbatch --hold --parsable -J {name} "
            "-p debug-4090-01 -o /dev/null --wrap true || exit 1; done",
        ],
        env=env,
    )
    loop_ids = done.stdout.split()
    SUBMITTED.extend(loop_ids)
    cancel(loop_ids)
    loop_calls, _ = shim_calls(shim_log)
    if len(loop_ids) != n_loop:
        raise RuntimeError(f"shell loop: {len(loop_ids)} of {n_loop} accepted")
    return wall, loop_calls, hydra_wall, hydra_calls


def settle(timeout: float = 180) -> float:
    """Wait until the controller has nothing of ours to digest (cancelled jobs gone from squeue, slurmdbd's agent
    queue drained): right after 10,000 cancelled array tasks it answers sbatch 50x slower. Returns the wait."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        queued = sh(["squeue", "-h", "-o", "%i"], check=False).stdout.split()
        m = re.search(r"DBD Agent queue size:\s*(\d+)", sh(["sdiag"], check=False).stdout)
        if not queued and (m is None or int(m.group(1)) < 100):
            break
        time.sleep(2)
    return time.time() - t0


PHASES_OF_SWEEP: List[str] = []  # where each danlu_sweep's time went (DANLU_TIMINGS), in order


def danlu_sweep(n: int, env: Dict[str, str], shim_log: Path, cwd: Path = REPO) -> tuple:
    """`danlu submit -m` of an n-run sweep of held jobs: (wall until Slurm accepted all, the command's own wall,
    sbatch calls, array job ids); the jobs are cancelled."""
    # not timed: the cluster's facts read and cached in this private home, as any submit of the hour before left them
    sh(
        [str(VENV_BIN / "python"), "-c", "from launcher.cluster_facts import cached; cached('testcluster')"],
        env=env,
        cwd=cwd,
    )
    timings = Path(env["DANLU_BENCH_ROOT"]) / "sweep-timings.json"  # where its time goes (launcher/timings.py)
    t0 = time.time()
    wall, _cpu, done = timed(
        [
            str(VENV_BIN / "danlu"),
            "submit",
            "-m",
            "experiment=tiny_dpo",
            "cluster=testcluster",
            f"args.seed=range(0,{n})",
            "resources.extra_sbatch=[--hold]",
            "--json",
        ],
        env=dict(env, DANLU_TIMINGS=str(timings)),
        cwd=cwd,
    )
    t = json.loads(timings.read_text())
    parts = dict(
        t["phases"],
        **{
            "start (interpreter, imports)": t["entered"] - t0,
            "after the last phase (printing, exit)": t0 + wall - t["exited"],
        },
    )
    PHASES_OF_SWEEP.append(", ".join(f"{k} {fmt(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])))
    ids = sorted({r["job_id"].split("_")[0] for r in json.loads(done.stdout)["runs"]})
    SUBMITTED.extend(ids)
    accepted = squeue_count(ids)
    ncalls, last_end = shim_calls(shim_log)
    cancel(ids, arrays=True)
    if accepted != n or last_end is None:
        raise RuntimeError(f"danlu submit: {accepted} of {n} jobs in the queue")
    slurm_calls(env)
    return last_end - t0, wall, ncalls, ids


def bench_submit(n: int, n_loop: int, n_hydra: int, reps: int, hydra_reps: int, before: Optional[Path] = None) -> None:
    """A sweep of n runs: danlu (and, with `before`, danlu at the commit before this round, once), a shell loop of
    n_loop sbatch calls and hydra-submitit-launcher on n_hydra runs; both scaled to n when smaller (marked)."""
    log(
        f"1. submitting a {n:,}-run sweep: danlu {reps} times, a shell loop of {n_loop:,} sbatch {reps} times, "
        f"hydra-submitit-launcher on {n_hydra:,} runs {hydra_reps} times"
    )
    shim, shim_log = make_shim("submit")
    rd = add(Row("1", f"submit a {n:,}-run sweep (held); wall time until Slurm accepted all", "danlu submit -m"))
    rb = add(Row("1", "", f"danlu at {before.name[3:]} (before this round)")) if before else None
    k_loop, k_hydra = n / n_loop, n / n_hydra
    rl = add(
        Row(
            "1",
            "",
            "shell loop of `sbatch --hold --wrap true`"
            + (f", {n_loop:,} calls x {k_loop:g} (extrapolated)" if n_loop != n else ""),
        )
    )
    rh = add(
        Row(
            "1",
            "",
            "hydra-submitit-launcher (-m)"
            + (f", {n_hydra:,} runs x {k_hydra:g} (extrapolated)" if n_hydra != n else ""),
            note="time until Slurm accepted all; it then blocks until every job ends (killed here)",
        )
    )
    calls: Dict[str, List[int]] = {"d": [], "h": [], "l": []}
    danlu_wall: List[float] = []
    for rep in range(reps):
        settle()
        accepted, wall, ncalls, _ids = danlu_sweep(n, private_env("submit-danlu", shim=shim), shim_log)
        rd.samples.append(accepted)
        danlu_wall.append(wall)
        calls["d"].append(ncalls)
        if before is not None and rep == 0:
            settle()
            benv = private_env("submit-before", shim=shim)
            benv["PYTHONPATH"] = str(before)
            t0 = time.time()
            done = sh(
                [
                    str(VENV_BIN / "python"),
                    "-m",
                    "launcher.cli",
                    "submit",
                    "-m",
                    "experiment=tiny_dpo",
                    "cluster=testcluster",
                    f"args.seed=range(0,{n})",
                    "resources.extra_sbatch=[--hold]",
                    "--json",
                ],
                env=benv,
                cwd=before,
                timeout=900,
            )
            ids = sorted({r["job_id"].split("_")[0] for r in json.loads(done.stdout)["runs"]})
            SUBMITTED.extend(ids)
            _n, last_end = shim_calls(shim_log)
            cancel(ids, arrays=True)
            rb.samples.append(last_end - t0)
        log(f"   waited {settle():.0f}s for the controller to digest the cancelled jobs")
        lw, lc, hw, hc = _loop_and_hydra(n_loop, n_hydra, rep < hydra_reps, shim, shim_log)
        rl.samples.append(lw * k_loop)
        calls["l"].append(int(lc * k_loop))
        if hw is not None:
            rh.samples.append(hw * k_hydra)
            calls["h"].append(int(hc * (k_hydra if hc > 1 else 1)))
        log(
            f"   rep {rep + 1}: danlu {rd.samples[-1]:.2f}s ({ncalls} sbatch), loop {rl.samples[-1]:.1f}s"
            + (f", hydra {rh.samples[-1]:.1f}s" if hw is not None else "")
        )
    rd.calls = f"{max(calls['d'])} sbatch"
    rd.note = (
        f"the command itself returns after {fmt(statistics.median(danlu_wall))} s (median); the cluster's "
        "facts cached (as a submit within the hour leaves them)"
    )
    mid = sorted(range(len(rd.samples)), key=lambda k: rd.samples[k])[len(rd.samples) // 2]  # the median rep's
    where = PHASES_OF_SWEEP[-len(rd.samples) :][mid]
    add(Row("1", "", f"  where the median danlu submit of {n:,} runs goes", samples=[rd.samples[mid]], note=where))
    FIGURES[f"sweep{n}_parts"] = where
    if rb is not None:
        rb.calls = ""
    rh.calls = f"{max(calls['h'])} sbatch" if calls["h"] else ""
    rh.at_least = False
    rl.calls = f"{max(calls['l'])} sbatch"
    RATIOS.append(
        (
            "1",
            f"sweep of {n:,}: shell loop / danlu = {rl.median / rd.median:.1f}x"
            + (f", hydra-submitit / danlu = {rh.median / rd.median:.1f}x" if rh.samples else "")
            + (f", danlu before this round / now = {rb.median / rd.median:.1f}x" if rb else "")
            + " (medians; extrapolated where marked)",
        )
    )
    TARGETS.append(
        (
            f"{n:,}-run sweep accepted in < 5 s with <= {max(1, n // 1000)} sbatch calls ({VERSION})",
            f"{fmt(rd.median)} s median, {max(calls['d'])} sbatch",
            rd.median < 5 and max(calls["d"]) <= max(1, n // 1000) if n >= 10000 else None,
        )
    )
    FIGURES[f"sweep{n}"] = rd.median
    FIGURES[f"sweep{n}_samples"] = list(rd.samples)
    FIGURES[f"sweep{n}_loop"], FIGURES["loop_n"] = rl.median, n_loop
    if rh.samples:
        FIGURES[f"sweep{n}_hydra"], FIGURES["hydra_n"] = rh.median, n_hydra
    if rb is not None:
        FIGURES[f"sweep{n}_before"] = rb.median


# ---- 2. status with a big store -------------------------------------------------------------------------
def _sbatch_array(n: int, wrap: str, hold: bool = False, name: str = "benchstore") -> str:
    cmd = [
        REAL_SBATCH,
        "--parsable",
        "-J",
        name,
        "-p",
        "debug-A10-01",
        "-c",
        "1",
        "--mem=10",
        "-t",
        "5",
        "-o",
        "/dev/null",
        f"--array=0-{n - 1}",
        "--wrap",
        wrap,
    ]
    if hold:
        cmd.insert(1, "--hold")
    job = sh(cmd).stdout.strip().split(";")[0]
    SUBMITTED.append(job)
    return job


def _sacct_states(job_ids: Sequence[str]) -> Dict[str, int]:
    from launcher import slurm

    out = sh(["sacct", "-X", "-n", "-P", "-o", slurm.SACCT_FORMAT, "-j", ",".join(job_ids)]).stdout
    counts: Dict[str, int] = {}
    for info in slurm.parse_sacct(out).values():
        s = slurm.base_state(info.state)
        counts[s] = counts.get(s, 0) + 1
    return counts


def populate(path: Path, sweeps: List[tuple], config: dict) -> None:
    """Sweeps of runs recorded exactly as `danlu submit` records them (launcher.store API), with real job ids.

    sweeps: (name, array job id, number of tasks). Every attempt is left PENDING with its job id, as
    `danlu submit` leaves it: the first `danlu status` reconciles them with Slurm."""
    from launcher.store import NewRun, Store

    store = Store(path)
    for name, job, n in sweeps:
        token = secrets.token_hex(6)
        tag = f"{token}:0"
        sdir = _TMP / "store-runs" / name
        runs = [
            NewRun(
                run=f"{name}/{i}",
                idx=i,
                overrides=["experiment=tiny_dpo", "cluster=testcluster", f"+args.point={i}"],
                config=dict(config, args=dict(config.get("args", {}), point=i)),
                run_dir=str(sdir / str(i)),
                workdir=str(REPO / "examples" / "tiny_dpo"),
                git_commit="0" * 40,
                git_dirty=False,
                partition="debug-A10-01",
                nodes=1,
                cluster_kind="slurm",
                script=str(sdir / "scripts" / "x.sbatch"),
                command="accelerate launch train.py",
                tag=tag,
                array_task=i,
            )
            for i in range(n)
        ]
        assert store.create_sweep(
            name, "tiny_dpo", "testcluster", ["experiment=tiny_dpo"], ["danlu", "submit"], str(sdir), runs
        )
        store.record_job(tag, job, True)
    store.close()


def bench_status(sizes: Sequence[int], reps: int, small_only: bool = False) -> None:
    """`danlu status --all` with each of `sizes` runs in the store (first look, steady), next to one raw sacct."""
    from launcher import slurm
    from launcher.spec.compose import Composer

    biggest = max(sizes)
    log(f"2. danlu status with {', '.join(f'{n:,}' for n in sizes)} runs in the store")
    n_done, n_failed, n_active = (150 if small_only else 850), 50, 50
    n_cancel = 1000 - n_done - n_failed - n_active
    # the jobs: really run (true / exit 3), held then cancelled, and held (active) during the measurement
    t0 = time.time()
    # (held ones first: while the controller starts the runnable tasks it answers sbatch slowly)
    cancel_job = _sbatch_array(n_cancel, "true", hold=True)
    big_jobs = [_sbatch_array(1000, "true", hold=True) for _ in range(biggest // 1000 - 1)]
    active_job = _sbatch_array(n_active, "true", hold=True)
    done_job = _sbatch_array(n_done, "true")
    failed_job = _sbatch_array(n_failed, "exit 3")
    cancel([cancel_job, *big_jobs], arrays=True)  # pending arrays cancelled whole: one record each
    log(
        f"   {len(big_jobs) + 4} job arrays submitted in {time.time() - t0:.1f}s; waiting for {n_done} + {n_failed} "
        f"array tasks to run and reach accounting"
    )
    deadline = time.time() + 600
    while True:
        counts = _sacct_states([done_job, failed_job])
        if counts.get("COMPLETED", 0) >= n_done and counts.get("FAILED", 0) >= n_failed:
            break
        if time.time() > deadline:
            raise RuntimeError(f"store jobs did not finish: {counts}")
        time.sleep(2)
    log(f"   done after {time.time() - t0:.1f}s")
    config = Composer().runs(["experiment=tiny_dpo", "cluster=testcluster"])[0].resolved
    small = [
        ("s-done", done_job, n_done),
        ("s-failed", failed_job, n_failed),
        ("s-cancelled", cancel_job, n_cancel),
        ("s-active", active_job, n_active),
    ]
    NOTES.append(
        f"status store ({VERSION}): real jobs on the test cluster recorded through launcher.store as `danlu "
        f"submit` records them: {n_done} COMPLETED, {n_failed} FAILED, {n_cancel} CANCELLED, {n_active} "
        f"PENDING (held), the rest CANCELLED (held arrays of 1,000 cancelled whole); 'first look' = every "
        f"attempt still PENDING in the store (the first status after the jobs ended), 'steady' = finished "
        f"runs already reconciled, only the held ones active"
    )
    for size in sizes:
        sweeps = small + [(f"s-big{k}", j, 1000) for k, j in enumerate(big_jobs[: size // 1000 - 1])]
        env = private_env(f"status-{size}")
        snap = Path(env["DANLU_BENCH_ROOT"]) / "snapshot.sqlite"
        t_pop = time.time()
        populate(snap, sweeps, config)
        log(f"   {size:,} runs recorded in {time.time() - t_pop:.1f}s")
        store = Path(env["DANLU_STORE"])
        store.parent.mkdir(parents=True, exist_ok=True)
        danlu = [str(VENV_BIN / "danlu"), "status", "--all"]
        # first look: every run still PENDING in the store; a fresh copy for each repetition
        r1 = add(Row("1", f"`danlu status --all`, {size:,} runs, first look (all to reconcile)", "danlu"))
        ccount: Dict[str, int] = {}
        for _ in range(reps):
            for suffix in ("", "-wal", "-shm"):
                Path(str(store) + suffix).unlink(missing_ok=True)
            shutil.copy(snap, store)
            wall, cpu, done = timed(danlu, env=env)
            r1.samples.append(wall)
            r1.cpu.append(cpu)
            ccount = slurm_calls(env)
        r1.calls = ", ".join(f"{v} {k}" for k, v in sorted(ccount.items())) or "0"
        r2 = add(Row("1", f"`danlu status --all`, {size:,} runs, steady (only {n_active} active)", "danlu"))
        for _ in range(reps):
            wall, cpu, done = timed(danlu, env=env)
            r2.samples.append(wall)
            r2.cpu.append(cpu)
            ccount = slurm_calls(env)
        r2.calls = ", ".join(f"{v} {k}" for k, v in sorted(ccount.items())) or "0"
        state_counts: Dict[str, int] = {}
        for row in json.loads(sh([*danlu, "--json"], env=env).stdout):
            state_counts[row["state"]] = state_counts.get(row["state"], 0) + 1
        slurm_calls(env)
        if sum(state_counts.values()) != size:
            raise RuntimeError(f"status lists {sum(state_counts.values())} runs, not {size}: {state_counts}")
        r2.note = "states: " + ", ".join(f"{v} {k}" for k, v in sorted(state_counts.items()))
        r3 = add(Row("1", f"`danlu status` (active only), {size:,} runs, steady", "danlu"))
        for _ in range(reps):
            wall, cpu, done = timed(danlu[:2], env=env)
            r3.samples.append(wall)
            r3.cpu.append(cpu)
            ccount = slurm_calls(env)
        r3.calls = ", ".join(f"{v} {k}" for k, v in sorted(ccount.items())) or "0"
        # one raw sacct for the same job ids (what danlu's first look asks, without the rest of its work)
        ids = slurm.query_ids([j for _, j, _ in sweeps])
        raw = add(Row("1", "", f"one raw `sacct` for the same {len(ids)} (array) job ids", calls="1 sacct"))
        for _ in range(reps):
            wall, cpu, done = timed(["sacct", "-X", "-D", "-n", "-P", "-o", slurm.SACCT_FORMAT, "-j", ",".join(ids)])
            raw.samples.append(wall)
            raw.cpu.append(cpu)
        raw.note = f"{done.stdout.count(chr(10))} lines"
        RATIOS.append(
            (
                "1",
                f"status --all, {size:,} runs ({VERSION}): first look {r1.median / raw.median:.1f}x, "
                f"steady {r2.median / raw.median:.1f}x one raw sacct (medians)",
            )
        )
        sacct_calls = max(
            int(re.search(r"(\d+) sacct", r.calls).group(1)) if "sacct" in r.calls else 0 for r in (r1, r2)
        )
        if size == 100000:
            TARGETS.append(
                (
                    f"`danlu status --all` with 100,000 runs < 1 s steady, < 2 s first look ({VERSION})",
                    f"steady {fmt(r2.median)} s, first look {fmt(r1.median)} s (median wall); "
                    f"{sacct_calls} sacct per call",
                    r2.median < 1 and r1.median < 2,
                )
            )
        if size == 10000:
            TARGETS.append(
                (
                    f"`danlu status --all` with 10,000 runs <= 2x one raw sacct ({VERSION})",
                    f"steady {r2.median / raw.median:.1f}x ({fmt(r2.median)} vs {fmt(raw.median)} s), first "
                    f"look {r1.median / raw.median:.1f}x",
                    r2.median <= 2 * raw.median,
                )
            )
        # where one first look and one steady status of this size spend their time (DANLU_TIMINGS)
        timings = Path(env["DANLU_BENCH_ROOT"]) / "timings.json"
        for label, fresh in (("first look", True), ("steady", False)):
            if fresh:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(store) + suffix).unlink(missing_ok=True)
                shutil.copy(snap, store)
            t0 = time.time()
            sh(danlu, env=dict(env, DANLU_TIMINGS=str(timings)))
            t = json.loads(timings.read_text())
            parts = dict(t["phases"], **{"start (interpreter, imports)": t["entered"] - t0})
            text = ", ".join(f"{k} {fmt(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
            add(Row("1", "", f"  where one {label} of {size:,} runs goes", samples=[time.time() - t0], note=text))
            FIGURES[f"status{size}_{'first' if fresh else 'steady'}_parts"] = text
        slurm_calls(env)
        FIGURES[f"status{size}_first"], FIGURES[f"status{size}_steady"] = r1.median, r2.median
        FIGURES[f"status{size}_sacct"] = raw.median
        log(
            f"   {size:,}: first look {r1.median:.2f}s ({r1.calls}), steady {r2.median:.2f}s ({r2.calls}), "
            f"raw sacct {raw.median:.2f}s"
        )
    cancel([active_job], arrays=True)


# ---- 3. the submit command ----------------------------------------------------------------------------------
SUBMIT_PHASES = (
    "imports",
    "composition",
    "checks",
    "cluster facts",
    "planning and rendering",
    "git",
    "store",
    "folders",
    "pickles",
    "sbatch",
)


def bench_submit_command(reps: int, before: Optional[Path] = None) -> Dict[str, str]:
    """`danlu submit` of one run and of a 10-run sweep (held, cancelled), where the time goes (DANLU_TIMINGS:
    launcher/timings.py), next to `sbatch` of the same script. Returns the env and a run id for section 4."""
    log(f"3. the submit command: one run and a 10-run sweep, {reps} times each, with the time of each phase")
    env = private_env("submit-cmd")
    timings = Path(env["DANLU_BENCH_ROOT"]) / "timings.json"
    base = [
        str(VENV_BIN / "danlu"),
        "submit",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.extra_sbatch=[--hold]",
        "--json",
    ]
    first = json.loads(sh(base, env=env, cwd=REPO).stdout)  # not timed: the cluster's facts read and cached (an hour)
    run_id = first["runs"][0]["run"]
    cancel([r["job_id"] for r in first["runs"]])
    slurm_calls(env)
    script = ""
    for label, extra in (("one run", []), ("a 10-run sweep", ["-m", "args.seed=range(0,10)"])):
        phases: Dict[str, List[float]] = {k: [] for k in ("start", *SUBMIT_PHASES, "rest")}
        total = add(Row("3", f"`danlu submit`, {label} (held)", "danlu submit"))
        for _ in range(reps):
            tenv = dict(env, DANLU_TIMINGS=str(timings))
            t0 = time.time()
            wall, cpu, done = timed([*base, *extra], env=tenv, cwd=REPO)
            out = json.loads(done.stdout)
            cancel(sorted({r["job_id"].split("_")[0] for r in out["runs"]}))
            t = json.loads(timings.read_text())
            total.samples.append(wall)
            total.cpu.append(cpu)
            phases["start"].append(t["entered"] - t0)
            for k in SUBMIT_PHASES:
                phases[k].append(t["phases"].get(k, 0.0))
            phases["rest"].append(wall - (t["entered"] - t0) - sum(t["phases"].values()))
            if label == "one run":
                store_script = sh([str(VENV_BIN / "danlu"), "show", out["runs"][0]["run"], "--json"], env=env).stdout
                script = json.loads(store_script).get("script_path") or script
        calls = slurm_calls(env)
        total.calls = ", ".join(f"{v // reps} {k}" for k, v in sorted(calls.items()) if k != "sacct" and k != "squeue")
        names = {
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
        for k, xs in phases.items():
            add(Row("3", "", f"  of which {names[k]}", samples=xs))
        FIGURES[f"submit_{label}"] = total.median
        FIGURES[f"submit_{label}_composition"] = statistics.median(phases["composition"])
        FIGURES[f"submit_{label}_start"] = statistics.median(phases["start"])
        if label == "one run":
            TARGETS.append(
                (
                    f"`danlu submit` of one run < 0.25 s median ({VERSION})",
                    f"{fmt(total.median)} s median ({fmt(total.best)} min)",
                    total.median < 0.25,
                )
            )
    if before is not None:
        benv = dict(private_env("submit-cmd-before"), PYTHONPATH=str(before))
        cmd = [str(VENV_BIN / "python"), "-m", "launcher.cli", *base[1:]]
        warm = json.loads(sh(cmd, env=benv, cwd=before).stdout)  # not timed: its cluster facts cached
        cancel([r["job_id"] for r in warm["runs"]])
        rb = add(
            Row(
                "3",
                "`danlu submit`, one run (held)",
                f"danlu at {before.name[3:]} (before this round)",
                note="python -m launcher.cli from that checkout",
            )
        )
        for _ in range(reps):
            wall, cpu, done = timed(cmd, env=benv, cwd=before)
            cancel([r["job_id"] for r in json.loads(done.stdout)["runs"]])
            rb.samples.append(wall)
        FIGURES["submit_one run_before"] = rb.median
    floor = add(
        Row(
            "3",
            "the libraries a submit needs, imported and nothing else",
            "`python -c 'import hydra, omegaconf, jinja2, submitit'`",
        )
    )
    for _ in range(reps):
        wall, cpu, _done = timed(
            [
                str(VENV_BIN / "python"),
                "-c",
                "import hydra, omegaconf, jinja2, submitit; "
                "from hydra.core.override_parser.overrides_parser import OverridesParser",
            ],
            env=env,
        )
        floor.samples.append(wall)
    FIGURES["submit_floor"] = floor.median
    if script and Path(script).exists():
        rs = add(Row("3", "`sbatch --hold` of the same one-run script", "sbatch"))
        for _ in range(reps):
            wall, cpu, done = timed(["sbatch", "--hold", "--parsable", script], env=env)
            cancel([done.stdout.strip().split(";")[0]])
            rs.samples.append(wall)
        RATIOS.append(
            (
                "3",
                f"submit one run ({VERSION}): danlu {fmt(FIGURES['submit_one run'])} s vs sbatch of its "
                f"script {fmt(rs.median)} s (medians)",
            )
        )
        FIGURES["sbatch_script"] = rs.median
    return {"env": json.dumps(env), "run": run_id}


# ---- 4. start-up of every command ---------------------------------------------------------------------------
def bench_startup(reps: int, with_run: Optional[Dict[str, str]], before: Optional[Path] = None) -> None:
    log(f"4. start-up of every command, {reps} times each")
    empty = private_env("startup")
    full = json.loads(with_run["env"]) if with_run else empty
    danlu = str(VENV_BIN / "danlu")
    cases = [
        ("`python -c pass` (the interpreter alone)", [str(VENV_BIN / "python"), "-c", "pass"], empty),
        ("`squeue`", ["squeue"], empty),
        ("`danlu --help`", [danlu, "--help"], empty),
        ("`danlu status` (empty store)", [danlu, "status"], empty),
    ]
    if with_run:
        cases += [
            ("`danlu logs RUN` (a run that never started)", [danlu, "logs", with_run["run"]], full),
            ("`danlu show RUN`", [danlu, "show", with_run["run"]], full),
        ]
    cases += [("`danlu cluster` (sinfo, squeue)", [danlu, "cluster"], empty)]
    if before is not None:
        benv = dict(empty, PYTHONPATH=str(before))
        cases += [
            (
                f"`python -m launcher.cli --help` at {before.name[3:]} (before this round)",
                [str(VENV_BIN / "python"), "-m", "launcher.cli", "--help"],
                benv,
            ),
            (
                "`python -m launcher.cli --help` now",
                [str(VENV_BIN / "python"), "-m", "launcher.cli", "--help"],
                dict(empty, PYTHONPATH=str(REPO)),
            ),
        ]
    rows = {}
    for label, cmd, env in cases:
        rows[label] = add(Row("4", "start-up" if not rows else "", label))
        sh(cmd, env=env, check=False)  # once before measuring: bytecode written (pip does it at install), store made
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        NOTES.append(
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
    slurm_calls(empty)
    slurm_calls(full)
    p, q, h = (rows[k] for k in ("`python -c pass` (the interpreter alone)", "`squeue`", "`danlu --help`"))
    others = [label for label, _c, _e in cases[3:] if "launcher.cli" not in label]
    RATIOS.append(
        (
            "4",
            f"start-up ({VERSION}): `danlu --help` {h.median / p.median:.1f}x `python -c pass`, "
            f"{h.median / q.median:.1f}x `squeue`; "
            + ", ".join(f"{label.split('`')[1]} {rows[label].median / q.median:.1f}x" for label in others)
            + " `squeue` (medians)",
        )
    )
    TARGETS.append(
        (
            f"`danlu --help` <= 2.5x `python -c pass` in the same venv ({VERSION})",
            f"{h.median / p.median:.2f}x ({fmt(h.median)} vs {fmt(p.median)} s, medians)",
            h.median <= 2.5 * p.median,
        )
    )
    FIGURES["help"], FIGURES["pass"] = h.median, p.median
    FIGURES["status_empty"], FIGURES["squeue"] = rows["`danlu status` (empty store)"].median, q.median
    if before is not None:
        FIGURES["help_m_before"] = rows[cases[-2][0]].median
        FIGURES["help_m_now"] = rows[cases[-1][0]].median


# ---- 1. danlu report over 100 runs x 10,000 steps -------------------------------------------------------------
def bench_report(runs: int, steps: int, reps: int) -> None:
    import report as report_bench  # bench/report.py: the same logs and store as its own run

    log(f"1. danlu report over {runs} runs x {steps:,} steps x 3 metrics")
    root = Path(tempfile.mkdtemp(prefix="report-", dir=_TMP))
    env = {
        "DANLU_HOME": str(root / "home"),
        "DANLU_STORE": str(root / "home" / "store.sqlite"),
        "DANLU_RUNS_DIR": str(root / "runs"),
        "NO_COLOR": "1",
    }
    saved = dict(os.environ)
    try:
        dirs = report_bench.write_logs(root, runs, steps)
        report_bench.record(env, dirs)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    size = sum(p.stat().st_size for d in dirs for p in d.rglob("rank0.log"))
    cmd = [str(VENV_BIN / "danlu"), "report", "bench"]
    cold = add(
        Row(
            "1",
            f"`danlu report`, {runs} runs x {steps:,} steps x 3 metrics ({size / 1e6:.0f} MB of logs)",
            "danlu report, first look (its cache empty)",
        )
    )
    for _ in range(max(2, reps // 2)):
        shutil.rmtree(Path(env["DANLU_HOME"]) / "cache", ignore_errors=True)
        cold.samples += report_bench.timed(cmd, env, 1)
    warm = add(Row("1", "", "danlu report, again (logs unchanged)", samples=report_bench.timed(cmd, env, reps)))
    loop = add(Row("1", "", "a notebook's loop: every log, a regex per line (in-process, no table)"))
    for _ in range(2):
        t = time.perf_counter()
        report_bench.notebook_loop(dirs)
        loop.samples.append(time.perf_counter() - t)
    RATIOS.append(
        (
            "1",
            f"report {runs}x{steps:,}: first look {cold.median / loop.median:.1f}x, again "
            f"{warm.median / loop.median:.2f}x the notebook loop (medians)",
        )
    )
    FIGURES["report_cold"], FIGURES["report_warm"], FIGURES["report_loop"] = cold.median, warm.median, loop.median
    shutil.rmtree(root, ignore_errors=True)


# ---- 2. controller load (sdiag) -------------------------------------------------------------------------------
def wait_queue_empty(timeout: float = 120) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not sh(["squeue", "-h", "-o", "%i"], check=False).stdout.split():
            return True
        time.sleep(2)
    return False


def bench_load(runs: int, watch_s: float, job_reps: int) -> None:
    """slurmctld RPCs (sdiag) per submit of a `runs`-run sweep, per status refresh with `runs` active runs, per
    minute of --watch, per 2-node job -- next to a hand-written script and submitit's polling of the same work."""
    import job_rpcs
    import status_rpcs

    log(
        f"2. controller load (sdiag): submit of {runs:,} runs, status refresh and --watch with {runs:,} active runs, "
        f"a 2-node job ({job_reps} times)"
    )
    if not wait_queue_empty():
        NOTES.append(f"controller load ({VERSION}) not measured: the queue never emptied (others' jobs would count)")
        return
    what = lambda d: ", ".join(f"{k} {v}" for k, v in d.items())  # noqa: E731
    env = private_env("load-submit")
    sh([str(VENV_BIN / "danlu"), "submit", "experiment=tiny_dpo", "cluster=testcluster", "--dry-run"], env=env)
    first = json.loads(
        sh(
            [
                str(VENV_BIN / "danlu"),
                "submit",
                "experiment=tiny_dpo",
                "cluster=testcluster",
                "resources.extra_sbatch=[--hold]",
                "--json",
            ],
            env=env,
        ).stdout
    )
    cancel([r["job_id"] for r in first["runs"]])  # the cluster's facts cached, as on every submit within the hour
    wait_queue_empty()
    ids: List[str] = []

    def danlu_submit() -> None:
        out = json.loads(
            sh(
                [
                    str(VENV_BIN / "danlu"),
                    "submit",
                    "-m",
                    "experiment=tiny_dpo",
                    "cluster=testcluster",
                    f"args.seed=range(0,{runs})",
                    "resources.extra_sbatch=[--hold]",
                    "--json",
                ],
                env=env,
            ).stdout
        )
        ids[:] = sorted({r["job_id"].split("_")[0] for r in out["runs"]})

    got = status_rpcs.counted(danlu_submit)
    SUBMITTED.extend(ids)
    cancel(ids, arrays=True)
    add(
        Row(
            "2",
            f"slurmctld RPCs: submit a {runs:,}-run sweep",
            "danlu submit -m",
            samples=[sum(got.values())],
            unit="n",
            note=what(got),
        )
    )
    FIGURES["rpc_submit"] = sum(got.values())
    wait_queue_empty()
    loop_ids: List[str] = []

    def loop() -> None:
        out = sh(
            [
                "bash",
                "-c",
                f"for i in $(seq {runs}); do sbatch --hold --parsable -p debug-4090-01 -o /dev/null "
                "--wrap true || exit 1; done",
            ]
        ).stdout
        loop_ids[:] = out.split()

    got = status_rpcs.counted(loop)
    SUBMITTED.extend(loop_ids)
    cancel(loop_ids)
    add(Row("2", "", f"shell loop of {runs:,} `sbatch`", samples=[sum(got.values())], unit="n", note=what(got)))
    FIGURES["rpc_submit_loop"] = sum(got.values())
    wait_queue_empty()
    rows = status_rpcs.measure(runs, watch_s, str(VENV_BIN / "danlu"), Path(tempfile.mkdtemp(dir=_TMP)))
    first_row = True
    for label, total, by_type, clients in rows:
        add(
            Row(
                "2",
                f"slurmctld RPCs with {runs:,} active runs" if first_row else "",
                label,
                samples=[total],
                unit="n",
                note=f"{by_type or '-'}; commands: {clients}",
            )
        )
        first_row = False
    refresh = rows[0][1]
    FIGURES["rpc_refresh"] = refresh
    TARGETS.append(
        (
            f"<= 2 slurmctld RPCs per `danlu status` refresh ({runs:,} active runs, {VERSION})",
            f"{refresh:g}",
            refresh <= 2,
        )
    )
    if watch_s:
        per_min = rows[1][1]
        FIGURES["rpc_watch_min"], FIGURES["rpc_watch_squeue_min"] = per_min, rows[2][1]
        TARGETS.append(
            (
                f"<= 1 slurmctld RPC per second for `danlu status --watch` ({VERSION})",
                f"{per_min:g} per minute ({per_min / 60:.2f} per second)",
                per_min <= 60,
            )
        )
    if not job_reps:
        return
    wait_queue_empty()
    results: Dict[str, List[Dict[str, int]]] = {"danlu": [], "hand-written sbatch": []}
    for _ in range(job_reps):
        wait_nodes_idle(["node1", "node2"])
        results["danlu"].append(job_rpcs.danlu_job(REPO, "head"))
        wait_nodes_idle(["node1", "node2"])
        results["hand-written sbatch"].append(job_rpcs.handwritten_job())
    first_row = True
    med = {}
    OWN = "job's own"
    for name, deltas in results.items():
        med[name] = {
            c: statistics.median(job_rpcs.groups(d)[c] for d in deltas)
            for c in ("job's own", "srun", "slurmd", "total")
        }
        add(
            Row(
                "2",
                "slurmctld RPCs of one 2-node x 2-rank job, start to end" if first_row else "",
                name,
                samples=[med[name]["total"]],
                unit="n",
                note=f"job's own {med[name][OWN]:g}, srun {med[name]['srun']:g}, slurmd {med[name]['slurmd']:g}; "
                + what(dict(sorted(deltas[-1].items(), key=lambda kv: -kv[1]))),
            )
        )
        first_row = False
    own = med["danlu"][OWN]
    FIGURES["rpc_job_own"], FIGURES["rpc_job_srun"] = own, med["danlu"]["srun"]
    FIGURES["rpc_job_own_hand"] = med["hand-written sbatch"][OWN]
    TARGETS.append(
        (
            f"<= 5 slurmctld RPCs from inside a 2-node job beyond what srun needs ({VERSION})",
            f"{own:g} (the job's own; srun {med['danlu']['srun']:g}, slurmd {med['danlu']['slurmd']:g}; "
            f"hand-written: {med['hand-written sbatch'][OWN]:g})",
            own <= 5,
        )
    )


# ---- 4 + 5. the 2-node crash job --------------------------------------------------------------------------
# section 5: the same job, no crash, a few steps: ends by itself right after its first steps
LAUNCH_ARGS_OVERRIDE = {"max_train_steps": 3, "crash_at_step": -1, "sleep_per_step": 0}
CRASH_ARGS = {
    "max_train_steps": 600,
    "train_batch_size": 16,
    "learning_rate": 0.001,
    "beta_dpo": 5000,
    "seed": 0,
    "checkpointing_steps": 10,
    "crash_at_step": 3,
    "crash_rank": 3,
    "sleep_per_step": 0.5,
}


@dataclass
class JobTimes:
    tool: str
    submitted: float
    job_id: str = ""
    started: Optional[float] = None
    first_step: Optional[float] = None
    ranks_up: Optional[float] = None  # every rank has printed its rank line (process group formed)
    crash: Optional[float] = None
    ended: Optional[float] = None
    capped: bool = False
    cli: Optional[float] = None  # how long the submit command itself took
    state: str = ""


def _scan(root: Path, seen: Dict[Path, int], needles: Dict[bytes, Optional[float]]) -> None:
    """Look for each needle in the text files under `root` that grew; record when it was first seen."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("output", "checkpoints")]
        for fn in filenames:
            if fn.endswith((".pkl", ".pt", ".sbatch")):
                continue
            p = Path(dirpath) / fn
            try:
                size = p.stat().st_size
            except OSError:
                continue
            if seen.get(p) == size:
                continue
            seen[p] = size
            try:
                data = p.read_bytes()
            except OSError:
                continue
            for needle, when in needles.items():
                if when is None and needle in data:
                    needles[needle] = time.time()


def watch_job(jt: JobTimes, root: Path, cap: float, timeout: float = 420) -> JobTimes:
    """Poll the job's logs and state: first training step, the injected crash, the end of the job."""
    needles: Dict[bytes, Optional[float]] = {
        b"step=1 ": None,
        b"injected crash": None,
        b"rank=3 world_size=4 local": None,
    }
    seen: Dict[Path, int] = {}
    last_state_poll = 0.0
    while True:
        now = time.time()
        _scan(root, seen, needles)
        jt.first_step = jt.first_step or needles[b"step=1 "]
        jt.crash = jt.crash or needles[b"injected crash"]
        jt.ranks_up = jt.ranks_up or needles[b"rank=3 world_size=4 local"]
        if now - last_state_poll >= (0.25 if jt.crash or jt.started is None else 1.0):
            last_state_poll = now
            state = job_state(jt.job_id)
            if state == "RUNNING" and jt.started is None:
                jt.started = now
            if state not in ACTIVE_STATES or state == "GONE":
                jt.ended, jt.state = now, state
                _scan(root, seen, needles)
                jt.first_step = jt.first_step or needles[b"step=1 "]
                jt.crash = jt.crash or needles[b"injected crash"]
                return jt
        if jt.crash and now - jt.crash > cap:
            jt.capped, jt.ended, jt.state = True, now, "RUNNING (capped)"
            cancel([jt.job_id])
            return jt
        if now - jt.submitted > timeout:
            cancel([jt.job_id])
            raise RuntimeError(
                f"{jt.tool} job {jt.job_id} did not crash/end within {timeout} s (state {job_state(jt.job_id)})"
            )
        time.sleep(0.2)


def run_danlu_job(nccl_like: bool, cap: float, job_args: Optional[Dict[str, object]] = None) -> JobTimes:
    env = private_env("crash-danlu")
    overrides = ["experiment=tiny_dpo", "cluster=testcluster", "resources.nodes=2", "resources.gpus_per_node=2"]
    overrides += [f"args.{k}={v}" for k, v in (job_args or CRASH_ARGS).items()]
    if nccl_like:
        overrides.append(f"program={BENCH / 'hang_on_peer_loss.py'}")
    jt = JobTimes("danlu", time.time())
    done = sh([str(VENV_BIN / "danlu"), "submit", *overrides, "--json"], env=env, cwd=REPO)
    jt.cli = time.time() - jt.submitted
    out = json.loads(done.stdout)
    jt.job_id = out["runs"][0]["job_id"]
    SUBMITTED.append(jt.job_id)
    root = Path(env["DANLU_RUNS_DIR"]) / out["sweep"]
    return watch_job(jt, root, cap)


def run_handwritten_job(nccl_like: bool, cap: float, job_args: Optional[Dict[str, object]] = None) -> JobTimes:
    d = Path(tempfile.mkdtemp(prefix="crash-hand-", dir=_TMP))
    program = str(BENCH / "hang_on_peer_loss.py") if nccl_like else "train.py"
    args = " ".join(f"--{k}={v}" for k, v in (job_args or CRASH_ARGS).items()) + f" --output_dir={d / 'output'}"
    text = (BENCH / "handwritten.sbatch").read_text()
    for key, value in {
        "@TIME@": "10",
        "@WORKDIR@": str(REPO / "examples" / "tiny_dpo"),
        "@LOGDIR@": str(d),
        "@VENV@": str(REPO / ".venv"),
        "@PORT@": "29415",
        "@PROGRAM@": program,
        "@ARGS@": args,
    }.items():
        text = text.replace(key, value)
    script = d / "job.sbatch"
    script.write_text(text)
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    jt = JobTimes("hand-written", time.time())
    jt.job_id = sh([REAL_SBATCH, "--parsable", str(script)], env=env).stdout.strip().split(";")[0]
    jt.cli = time.time() - jt.submitted
    SUBMITTED.append(jt.job_id)
    return watch_job(jt, d, cap)


def bench_crash(reps: int, hang_reps: int, cap: float) -> None:
    log(
        f"4. 2-node tiny_dpo, rank 3 dies at step 3: {reps} run(s) each as is, {hang_reps} with NCCL-like ranks; "
        f"cap {cap:.0f} s"
    )
    results: Dict[tuple, List[JobTimes]] = {}
    plan = []
    for _ in range(reps):
        plan += [("danlu", False), ("hand-written", False)]
    for _ in range(hang_reps):
        plan += [("danlu", True)]
    plan += [("hand-written", True)]  # waits until the cap: once is enough
    for tool, nccl in plan:
        wait_nodes_idle(["node1", "node2"])
        run = run_danlu_job if tool == "danlu" else run_handwritten_job
        jt = run(nccl, cap)
        results.setdefault((tool, nccl), []).append(jt)
        c2e = (jt.ended - jt.crash) if jt.crash and jt.ended else float("nan")
        log(
            f"   {tool}{' nccl-like' if nccl else ''}: job {jt.job_id} {jt.state}; submit->step1 "
            f"{(jt.first_step or float('nan')) - jt.submitted:.1f}s; "
            f"crash->end {c2e:.1f}s{' (capped)' if jt.capped else ''}"
        )
    for nccl in (False, True):
        label = (
            "NCCL-like: surviving ranks block in the collective (bench/hang_on_peer_loss.py)"
            if nccl
            else "as is (gloo on CPU: surviving ranks see the closed socket)"
        )
        first = True
        med = {}
        for tool in ("danlu", "hand-written"):
            jts = results.get((tool, nccl), [])
            if not jts:
                continue
            row = add(
                Row(
                    "5",
                    f"crash -> end of job, {label}" if first else "",
                    "danlu (srun --kill-on-bad-exit=1, node agent)"
                    if tool == "danlu"
                    else "hand-written sbatch (srun + accelerate launch, fixed port)",
                    samples=[j.ended - j.crash for j in jts if j.crash and j.ended],
                    at_least=any(j.capped for j in jts),
                    note="; ".join(sorted({j.state for j in jts})),
                )
            )
            first = False
            med[tool] = row
        if "danlu" in med and "hand-written" in med:
            d, h = med["danlu"], med["hand-written"]
            key = "crash_nccl" if nccl else "crash"
            FIGURES[key], FIGURES[key + "_hand"], FIGURES[key + "_capped"] = d.median, h.median, float(h.at_least)
            RATIOS.append(
                (
                    "5",
                    f"crash -> end ({'NCCL-like' if nccl else 'as is'}): hand-written "
                    f"{'>= ' if h.at_least else ''}{h.median:.1f} s vs danlu {d.median:.1f} s"
                    f" ({'>= ' if h.at_least else ''}{h.median / d.median:.1f}x)",
                )
            )
        if nccl and "danlu" in med:
            TARGETS.append(
                (
                    "crash -> end < 30 s (NCCL-like ranks: the case that hangs)",
                    f"{fmt(med['danlu'].median)} s median",
                    med["danlu"].median < 30,
                )
            )
        if not nccl and "danlu" in med:
            TARGETS.append(
                ("crash -> end < 30 s (as is)", f"{fmt(med['danlu'].median)} s median", med["danlu"].median < 30)
            )


def wait_nodes_idle(nodes: List[str], timeout: float = 120) -> None:
    """The previous job's nodes may still be completing: start the next timed job on idle nodes."""
    try:
        slurm_helpers.wait_nodes_idle(timeout=timeout, nodes=nodes)
    except TimeoutError as e:
        log(f"   {e}: measuring anyway")


def bench_launch(pairs: int) -> None:
    """Submit -> first training step, danlu and the hand-written script submitted in alternating order,
    one pair at a time (the machine's load drifts: pairs see the same load)."""
    job_args = dict(CRASH_ARGS, **LAUNCH_ARGS_OVERRIDE)
    log(
        f"5. launch overhead: {pairs} pairs of the same 2-node tiny_dpo job ({job_args['max_train_steps']} steps), "
        f"danlu and hand-written in alternating order"
    )
    runs: Dict[str, List[JobTimes]] = {"danlu": [], "hand-written": []}
    order = ("danlu", "hand-written")
    for k in range(pairs):
        for tool in order if k % 2 == 0 else order[::-1]:
            wait_nodes_idle(["node1", "node2"])
            run = run_danlu_job if tool == "danlu" else run_handwritten_job
            jt = run(False, 60, job_args)
            if not (jt.first_step and jt.started):
                raise RuntimeError(f"{tool} job {jt.job_id} ended {jt.state} without a first step")
            runs[tool].append(jt)
            log(
                f"   {tool}: job {jt.job_id} {jt.state}; submit->step1 {jt.first_step - jt.submitted:.2f}s "
                f"(submit command {jt.cli:.2f}s, job start->step1 {jt.first_step - jt.started:.2f}s)"
            )
    rows = {}
    for tool in order:
        jts = runs[tool]
        rows[tool] = add(
            Row(
                "5",
                "submit -> first training step logged (2 nodes x 2 ranks)" if tool == "danlu" else "",
                "danlu submit" if tool == "danlu" else "sbatch hand-written script",
                samples=[j.first_step - j.submitted for j in jts],
            )
        )
        add(Row("5", "", "  of which the submit command", samples=[j.cli for j in jts]))
        add(
            Row(
                "5",
                "",
                "  of which submitted -> job running",
                samples=[j.started - j.submitted - j.cli for j in jts],
                note="as seen by polling squeue every 0.25 s",
            )
        )
        add(
            Row(
                "5",
                "",
                "  of which job start -> every rank up",
                samples=[j.ranks_up - j.started for j in jts if j.ranks_up],
                note="python/torch/accelerate start-up, rendezvous",
            )
        )
        add(
            Row(
                "5",
                "",
                "  of which every rank up -> step 1",
                samples=[j.first_step - j.ranks_up for j in jts if j.ranks_up],
                note="300 pretraining steps of the reference model, then step 1 (CPU)",
            )
        )
    d, h = rows["danlu"], rows["hand-written"]
    paired = [
        a.first_step - a.submitted - (b.first_step - b.submitted)
        for a, b in zip(runs["danlu"], runs["hand-written"], strict=True)
    ]
    ratio = d.median / h.median
    FIGURES["launch"], FIGURES["launch_hand"] = d.median, h.median
    FIGURES["launch_cli"] = statistics.median(j.cli for j in runs["danlu"])
    FIGURES["launch_cli_hand"] = statistics.median(j.cli for j in runs["hand-written"])
    FIGURES["launch_job"] = statistics.median(j.first_step - j.started for j in runs["danlu"])
    FIGURES["launch_job_hand"] = statistics.median(j.first_step - j.started for j in runs["hand-written"])
    RATIOS.append(
        (
            "5",
            f"launch: danlu / hand-written = {ratio:.2f} (medians, {d.median - h.median:+.2f} s); "
            f"paired difference median {statistics.median(paired):+.2f} s over {len(paired)} pairs",
        )
    )
    TARGETS.append(
        (
            "launch overhead within 10% of the hand-written script",
            f"{ratio:.2f}x ({d.median - h.median:+.2f} s) median of {len(paired)} pairs",
            ratio <= 1.1,
        )
    )


# ---- report ---------------------------------------------------------------------------------------------
def machine() -> Dict[str, str]:
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = []
    for dist in ("hydra-core", "hydra-submitit-launcher", "submitit", "torch", "accelerate"):
        try:
            from importlib.metadata import version

            versions.append(f"{dist} {version(dist)}")
        except Exception:  # noqa: BLE001 -- not installed
            versions.append(f"{dist} (not installed)")
    commit = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    dirty = sh(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", "launcher"], check=False
    ).stdout.strip()
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "load": load,
        "versions": ", ".join(versions),
        "commit": commit + (" (launcher/ modified)" if dirty else ""),
        "slurm": ", ".join(f"{v}: `{SLURM_SEEN[v]}`" for v in SLURM_SEEN),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def sweep_verdict(f: Dict[str, Any]) -> str:
    """Whether the 10,000-run sweep met its target (5 s) in this run, with every repeat and the newer cluster's
    figure beside it, and what is left when it did not."""
    samples = f.get("sweep10000_samples") or [f["sweep10000"]]
    reps = ", ".join(fmt(x) for x in samples)
    spread = max(samples) / min(samples)
    newer = (
        f"; the same command on Slurm {f['newer']}, later in this run: {fmt(f['sweep10000_newer'])} s"
        if "sweep10000_newer" in f
        else ""
    )
    if f["sweep10000"] < 5:
        return f"The target (5 s) is met: the repeats took {reps} s{newer}."
    return (
        f"The target (5 s) is missed in this run: the repeats took {reps} s (the slowest "
        f"{spread:.2f}x the fastest){newer}. What is left is CPU time of the one danlu process, spread over the "
        "phases above with no single cause: per run, its config copied and its override applied, its "
        "dataclasses built, its args checked against the program's flags, its lines of the array's script "
        "rendered and its row written to the store. Three further cuts found by cProfile (each program file "
        "read once per sweep, not three times per run; the config copied by unpickling it; the per-task pickle "
        "paths made only when needed) made no difference that stood out of this 2-core machine's run-to-run "
        "spread, and were not kept."
    )


def findings() -> str:
    """What this run found, written from its own numbers (FIGURES): nothing typed by hand."""
    f = FIGURES
    out = ["## What the benchmark found, and what was fixed (issue 18)", ""]
    if "help" in f:
        line = (
            f"- **`danlu --help`** takes {fmt(f['help'])} s, {f['help'] / f['pass']:.2f}x `python -c pass` "
            f"({fmt(f['pass'])} s). `python -X importtime` showed the CLI's own import spent most of its time on "
            "`typing` (for one annotation in launcher/cli/__init__.py) and on `shutil` (argparse's help formatter "
            "asks it for the terminal width; it imports bz2 and lzma): both are gone from that path. What is left "
            "is argparse itself (re, gettext, locale)"
        )
        if "help_m_before" in f:
            line += (
                f"; `python -m launcher.cli --help` measured here at the commit before and now: "
                f"{fmt(f['help_m_before'])} s -> {fmt(f['help_m_now'])} s"
            )
        out.append(line + ".")
    if "submit_one run" in f:
        line = (
            f"- **`danlu submit` of one run**: {fmt(f['submit_one run'])} s median, of which "
            f"{fmt(f['submit_one run_start'])} s the interpreter and the CLI "
            f"and {fmt(f['submit_one run_composition'])} s "
            "Hydra (its import, the override parser, one composition); the breakdown is in section 3 "
            "(DANLU_TIMINGS, launcher/timings.py). Every submit also ran `scontrol show config` and `scontrol show "
            "partition` for the stop grace (KillWait, GraceTime): they now come from the cluster facts cached "
            "for an hour (launcher/cluster_facts.py stop_graces), so a submit asks slurmctld only for the sbatch"
        )
        line += (
            ". Its process also spent a good part of its time after its last line, "
            "in the interpreter's teardown (clearing the "
            "modules of Hydra, OmegaConf, jinja and submitit): `danlu` now ends with os._exit after joining its "
            "threads, running atexit and flushing (launcher/cli/__init__.py entry)"
        )
        if "submit_floor" in f:
            line += (
                f". The target (0.25 s) is missed: importing the libraries a submit needs, and nothing else, "
                f"takes {fmt(f['submit_floor'])} s here (section 3); below that only a submit without Hydra's "
                "composition would go"
            )
        if "submit_one run_before" in f:
            line += f"; the same command at the commit before: {fmt(f['submit_one run_before'])} s"
        if "sbatch_script" in f:
            line += f"; `sbatch` of the same script alone: {fmt(f['sbatch_script'])} s"
        out.append(line + ".")
    if "sweep10000" in f:
        line = (
            f"- **A 10,000-run sweep** is accepted {fmt(f['sweep10000'])} s after the command starts (10 arrays of "
            "at most MaxArraySize 1001). Profiling (cProfile) found per-run work that did not depend on the run: "
            "every value override checked by OmegaConf (`OmegaConf.update` on a typed config, the largest "
            "part), `copy.deepcopy` of the composed config, `dataclasses.fields()` for each nested dataclass "
            "of every run, the program's path resolved and its flag table rebuilt per key, the workdir and the runs "
            "folder resolved per run, and the file checks per run. Now an override's value is checked by OmegaConf "
            "once per key and value type when its node takes such values as they are (an Any, int, float, bool or "
            "str node; anything else is still checked every time), and the rest is computed once per sweep. "
            "Then the file system: every run's folder and output dir (20,000 for 10,000 runs) were made before "
            "the sbatch calls and took longer than all else that touches the disk; a run's own folders are now "
            "made by its node agents when it starts (launcher/job/agent.py), a submit makes only the sweep's, "
            "and an array's agents are pickled once (10 pickles, not 10,000)"
        )
        if "sweep10000_parts" in f:
            line += f". Where the median run's time went (DANLU_TIMINGS): {f['sweep10000_parts']}"
        if "sweep10000_before" in f:
            line += (
                f"; the same sweep at the commit before: {fmt(f['sweep10000_before'])} s "
                f"({f['sweep10000_before'] / f['sweep10000']:.1f}x)"
            )
        out.append(line + ". " + sweep_verdict(f))
    if "status100000_steady" in f:
        out.append(
            f"- **`danlu status --all` with 100,000 runs**: {fmt(f['status100000_first'])} s first look, "
            f"{fmt(f['status100000_steady'])} s steady; one raw sacct for the same jobs "
            f"{fmt(f['status100000_sacct'])} s. It first missed the target: each run's row in the store holds "
            "its whole resolved config, so reading 8 short columns of 100,000 runs read the whole store, the "
            "latest attempt was found by a correlated MAX per run, and the rows were sorted in Python. Now "
            "what status reads has covering indexes of its own (store migration 4: runs_brief in the table's "
            "order, attempts_brief), squeue and sacct are asked about the active jobs (attempts_active) while "
            "the rows are read (state/reconcile.py EarlyAsk). Then: status reads only the columns it shows "
            '(store.VIEWS "table"; the refresh reads what the state machine needs for the runs still active '
            "only), the table is made from the store's rows by position with no item per row "
            "(views/table.py Fields), the cells after RUN and JOBID once per distinct value and a line's end "
            "once per distinct one (100,000 finished runs share a few states, reasons and times), and a "
            "one-shot status runs without the cycle collector (each of its passes walked all 100,000 rows). "
            "And one fault: `danlu` ends with os._exit, which left the store's SQLite connection open, so the "
            "write-ahead log was never checkpointed and removed; every later command rebuilt its index from "
            "the whole file and copied it all into the database again; the connection is now closed at exit "
            "(launcher/store.py). After a refresh that changed "
            "thousands of runs their rows are made from the updates the store took, not read again "
            "(store.updated_rows). What is left is SQLite decoding 100,000 rows "
            f"and Python making 100,000 lines: steady, {f.get('status100000_steady_parts', '')}; first "
            f"look, {f.get('status100000_first_parts', '')}"
        )
        if f["status100000_first"] >= 2:
            out[-1] += (
                ". The first look misses its target (2 s): SQLite writes 100,000 attempts' new states "
                "(each update also moves the attempt's entries in two indexes), and the state machine steps "
                "every run; below that needs fewer store writes than one per attempt that changed"
            )
        out[-1] += "."
    if "status10000_steady" in f:
        ratio = f["status10000_steady"] / f["status10000_sacct"]
        text = (
            f"- **With 10,000 runs** status takes {ratio:.1f}x one raw sacct ({fmt(f['status10000_steady'])} vs "
            f"{fmt(f['status10000_sacct'])} s)"
        )
        if ratio > 2 and "status_empty" in f:
            text += (
                f": the target (2x) is missed. `danlu status` on an empty store takes {fmt(f['status_empty'])} s "
                f"(section 4), already {f['status_empty'] / f['status10000_sacct']:.1f}x this sacct, which answers "
                "from the local slurmdbd in milliseconds: the interpreter, and the imports of the store (sqlite3), "
                "the state machine and the table. Reading 10,000 rows and printing 10,000 lines come on top"
            )
        out.append(text + ".")
    if "launch" in f and "launch_cli" in f:
        over = f["launch"] - f["launch_hand"]
        line = (
            f"- **Submit -> first training step** (2 nodes x 2 ranks): {fmt(f['launch'])} s, the hand-written "
            f"script {fmt(f['launch_hand'])} s ({f['launch'] / f['launch_hand']:.2f}x, {over:+.2f} s). Of the "
            f"difference, {fmt(f['launch_cli'] - f['launch_cli_hand'])} s is the submit command "
            f"({fmt(f['launch_cli'])} s vs sbatch's {fmt(f['launch_cli_hand'])} s: Hydra's import and composition, "
            f"above) and {f['launch_job'] - f['launch_job_hand']:+.2f} s the job from its start to step 1 "
            f"({fmt(f['launch_job'])} s vs {fmt(f['launch_job_hand'])} s: danlu's batch script finds the head node "
            "and a free port, and its node agents run beside the 4 ranks on these 2 cores)"
        )
        if f["launch"] > 1.1 * f["launch_hand"]:
            line += "; the 10% target is missed"
        out.append(line + ".")
    if "report_cold" in f:
        out.append(
            f"- **`danlu report`** over 100 runs x 10,000 steps: {fmt(f['report_cold'])} s the first time "
            f"(every log parsed), {fmt(f['report_warm'])} s again (its cache); a notebook's regex loop over the "
            f"same logs: {fmt(f['report_loop'])} s, with no table."
        )
    if "rpc_refresh" in f:
        line = f"- **slurmctld load**: a status refresh costs {f['rpc_refresh']:g} RPCs"
        if "rpc_watch_min" in f:
            line += f", a minute of --watch {f['rpc_watch_min']:g}"
        if "rpc_submit" in f:
            line += f", a 1,000-run submit {f['rpc_submit']:g}"
        out.append(line + " (section 2: by type, next to a shell loop, `watch squeue` and submitit's polling).")
    return "\n".join(out) + "\n"


def headlines() -> str:
    """The README's Benchmarks table: the headline figures of this run, side by side with the alternative."""
    f = FIGURES
    rows = []
    if "sweep10000" in f:
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
        rows.append(
            (
                "10,000-run sweep, until Slurm accepted every job",
                f"{fmt(f['sweep10000'])} s, 10 sbatch calls",
                "; ".join(alt),
            )
        )
    if "status100000_steady" in f:
        rows.append(
            (
                "`danlu status --all`, 100,000 runs in the store",
                f"{fmt(f['status100000_steady'])} s "
                f"({fmt(f['status100000_first'])} s on the first look after they ended)",
                f"one raw `sacct` for the same jobs: {fmt(f['status100000_sacct'])} s",
            )
        )
    if "status10000_steady" in f:
        rows.append(
            (
                "`danlu status --all`, 10,000 runs",
                f"{fmt(f['status10000_steady'])} s ({fmt(f['status10000_first'])} s first look)",
                f"one raw `sacct`: {fmt(f['status10000_sacct'])} s",
            )
        )
    if "report_cold" in f:
        rows.append(
            (
                "`danlu report`, 100 runs x 10,000 steps",
                f"{fmt(f['report_warm'])} s ({fmt(f['report_cold'])} s the first time)",
                f"a notebook's regex loop over the logs: {fmt(f['report_loop'])} s",
            )
        )
    if "submit_one run" in f:
        rows.append(
            (
                "`danlu submit`, one run",
                f"{fmt(f['submit_one run'])} s",
                f"`sbatch` of the same script: {fmt(f.get('sbatch_script', float('nan')))} s",
            )
        )
    if "help" in f:
        rows.append(
            (
                "`danlu --help`",
                f"{fmt(f['help'])} s",
                f"`python -c pass`: {fmt(f['pass'])} s ({f['help'] / f['pass']:.1f}x)",
            )
        )
    if "rpc_refresh" in f:
        alt = f"`watch squeue --me`: {f['rpc_watch_squeue_min']:g} a minute" if "rpc_watch_squeue_min" in f else ""
        mine = f"{f['rpc_refresh']:g} per refresh" + (
            f", {f['rpc_watch_min']:g} a minute of --watch" if "rpc_watch_min" in f else ""
        )
        rows.append(("slurmctld RPCs, `danlu status` with 1,000 active runs", mine, alt))
    if "rpc_submit" in f:
        rows.append(
            (
                "slurmctld RPCs, submitting 1,000 runs",
                f"{f['rpc_submit']:g}",
                f"a shell loop of sbatch: {f.get('rpc_submit_loop', float('nan')):g}",
            )
        )
    if "rpc_job_own" in f:
        rows.append(
            (
                "slurmctld RPCs of a 2-node job's own (besides srun's)",
                f"{f['rpc_job_own']:g}",
                f"hand-written sbatch: {f['rpc_job_own_hand']:g}",
            )
        )
    if "crash_nccl" in f:
        rows.append(
            (
                "2-node job, a rank dies, the others blocked in a collective (as NCCL): crash -> end of job",
                f"{fmt(f['crash_nccl'])} s",
                f"hand-written srun + accelerate: "
                f"{'still running when stopped at ' if f['crash_nccl_capped'] else ''}{fmt(f['crash_nccl_hand'])} s",
            )
        )
    if "launch" in f:
        rows.append(
            (
                "submit -> first training step, 2 nodes x 2 ranks",
                f"{fmt(f['launch'])} s",
                f"hand-written script {fmt(f['launch_hand'])} s ({f['launch'] / f['launch_hand']:.2f}x)",
            )
        )
    out = ["| | danlu | the alternative |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out) + "\n"


def update_readme(path: Path, text: str) -> bool:
    """Put `text` between the README's bench markers; False when they are missing."""
    start, end = "<!-- bench/run.py writes this table -->", "<!-- end of the table bench/run.py writes -->"
    readme = path.read_text()
    if start not in readme or end not in readme:
        return False
    head, rest = readme.split(start, 1)
    path.write_text(head + start + "\n" + text + rest[rest.index(end) :])
    return True


ROUND_ONE = """\
## Earlier findings (issue 8, round one)

- `danlu status` with 10,000 runs first missed 1 s: every row read the run's whole config, SQLite sorted wide rows,
  logs were read per run; fixed in ecf6adc and c16d9eb. A pending job array cancelled whole left its runs PENDING
  (fixed in 1bd6315). Crash -> end with NCCL-like ranks waited for torch elastic's 30 s SIGKILL; the node agent
  kills the ranks still alive 3 s after elastic's closing signal (e46c20a). The node agent's start lost time to
  numpy imported by submitit; srun starts `python -m launcher.job`, which keeps numpy out.
- hydra-submitit-launcher also sends a sweep as one job array, but first pickles the launcher with Hydra's global
  state into every job, then blocks in `job.results()` until every job has ended. The shell loop pays one sbatch
  round trip per job.
"""


def table(version: str) -> str:
    out = ["| # | measurement | tool | min | median | Slurm calls | note |", "|---|---|---|---|---|---|---|"]
    for r in ROWS:
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


def report(args: argparse.Namespace, started: float, info: Dict[str, str], before: str) -> str:
    lines = [
        "# danlu benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(started))} by `python bench/run.py"
        f"{' --quick' if args.quick else ''}` in {(time.time() - started) / 60:.1f} min, all in this one run; "
        "this file is written by it.",
        "",
        f"- machine: {info['cores']} cores ({info['cpu']}), {info['memory']} memory, Linux {info['kernel']}, "
        f"Python {info['python']}",
        f"- danlu at commit {info['commit']}; {info['versions']}",
        f"- Slurm: {info['slurm']} (the project's test clusters, tests/cluster/up.sh VERSION: slurmctld, 3 "
        f"slurmd, slurmdbd on this machine)",
        f"- load average (1, 5, 15 min) at start: {before}; at end: {info['load']}. Times are wall clock "
        "(seconds); CPU is user+sys of the process and its children; RPC rows count slurmctld RPCs (sdiag).",
        "",
        "Sections: (1) scale: a 10,000-run sweep, status with 10,000 and 100,000 runs, report over 100 runs x "
        "10,000 steps; (2) controller load, from sdiag; (3) the submit command and where its time goes; (4) "
        "start-up of every command; (5) a 2-node job's crash -> end and launch overhead (round one).",
        "",
    ]
    if args.quick:
        lines += ["**--quick**: the headline rows only, smaller and fewer (see each row).", ""]
    versions = list(dict.fromkeys(r.version for r in ROWS))
    for v in versions:
        lines += [f"## Results on Slurm {v}", "", table(v), ""]
    lines += ["## Ratios", ""] + [f"- ({sec}) {text}" for sec, text in RATIOS]
    lines += [
        "",
        "## Targets (issue 18, and round one's still held)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for t, m, ok in TARGETS:
        lines.append(f"| {t} | {m} | {'yes' if ok else ('n/a' if ok is None else '**no**')} |")
    if NOTES:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in NOTES]
    lines += ["", "## Headlines (the README's table)", "", headlines(), findings(), ROUND_ONE]
    return "\n".join(lines).rstrip() + "\n"


def _in_venv(module: str) -> bool:
    """Whether the project's .venv can import `module`."""
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(VENV_BIN / "python"), "-c", probe], capture_output=True).returncode == 0


def worktree(commit: str) -> Optional[Path]:
    """A checkout of danlu at `commit` (git worktree), to measure the code before this round beside it."""
    path = _TMP / f"at-{commit[:10]}"
    done = sh(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit], check=False)
    return path if done.returncode == 0 else None


SECTIONS = ("startup", "submit", "sweep", "status", "report", "load", "crash", "launch", "newer")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the headline rows only, smaller and fewer (under 3 minutes)")
    p.add_argument("--only", help=f"comma-separated subset: {','.join(SECTIONS)}")
    p.add_argument(
        "--before", default=BEFORE, help="the commit before this round, measured beside (full run; '' for none)"
    )
    p.add_argument("--newer", default="24.11", help="the newer test cluster for the headline rows ('' for none)")
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"), help="where to write the results (markdown)")
    args = p.parse_args()
    quick = args.quick
    only = set((args.only or ("startup,submit,sweep,status,report,load" if quick else ",".join(SECTIONS))).split(","))
    hydra = "sweep" in only and not quick
    sh(["bash", str(REPO / "scripts" / "setup.sh")], timeout=900)  # .venv with danlu, as the tests use it
    if hydra and not _in_venv("hydra_plugins.hydra_submitit_launcher"):
        log("installing the bench extra into .venv (hydra-submitit-launcher, the alternative of section 1)")
        sh([str(VENV_BIN / "pip"), "install", "-q", "--disable-pip-version-check", "-e", f"{REPO}[bench]"], timeout=900)
    started = time.time()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    log("starting the test cluster (tests/cluster/up.sh)")
    sh(["bash", str(REPO / "tests" / "cluster" / "up.sh")], timeout=900)
    newer = args.newer if "newer" in only and args.newer else ""
    if newer:
        sh(["bash", str(REPO / "tests" / "cluster" / "up.sh"), newer], timeout=900)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    before = worktree(args.before) if args.before and not quick else None
    try:
        use_slurm("22.05")
        with_run = None
        if "submit" in only:
            with_run = bench_submit_command(reps=3 if quick else 9, before=before)
        if "startup" in only:
            bench_startup(reps=7 if quick else 15, with_run=with_run, before=before)
        if "sweep" in only:
            bench_submit(
                10000,
                n_loop=200 if quick else 1000,
                n_hydra=1000,
                reps=1 if quick else 3,
                hydra_reps=1 if hydra else 0,
                before=before,
            )
        if "status" in only:
            bench_status((10000,) if quick else (10000, 100000), reps=3 if quick else 5, small_only=quick)
        if "report" in only:
            bench_report(*((20, 2000) if quick else (100, 10000)), reps=3 if quick else 5)
        if "load" in only:
            bench_load(1000, watch_s=0 if quick else 60, job_reps=0 if quick else 2)
        if "crash" in only:
            bench_crash(reps=2, hang_reps=1, cap=60)
        if "launch" in only:
            bench_launch(pairs=4)
        if newer:
            cancel_all()
            figures = dict(FIGURES)  # the findings and the README's table are 22.05's
            use_slurm(newer)
            log(f"the headline rows again on Slurm {newer}")
            with_run = bench_submit_command(reps=5, before=None)
            bench_startup(reps=7, with_run=with_run)
            bench_submit(10000, n_loop=1000, n_hydra=1000, reps=1, hydra_reps=0)
            bench_status((10000,), reps=3)
            bench_load(1000, watch_s=0, job_reps=0)
            use_slurm("22.05")
            if "sweep10000" in FIGURES:
                figures["sweep10000_newer"] = FIGURES["sweep10000"]
                figures["newer"] = newer
            FIGURES.clear()
            FIGURES.update(figures)
    finally:
        cancel_all()
        if before is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)], capture_output=True)
        shutil.rmtree(_TMP, ignore_errors=True)
    text = report(args, started, machine(), load_before)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        log(f"wrote {args.out}")
    if not quick and args.out == str(BENCH / "RESULTS.md") and not args.only:
        if update_readme(REPO / "README.md", headlines()):
            log("wrote the README's Benchmarks table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
