"""Section 1, scale: `danlu status --all` with 10,000 and 100,000 runs in the store (first look, steady) next to one
raw sacct for the same jobs. The runs are real jobs of the test cluster, recorded as `danlu submit` records them."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bench.paths import DANLU, REPO
from bench.results import Results, Row, counts_text, fmt
from bench.session import Session
from bench.shell import cancel, log, sh, slurm_calls, timed

Sweep = Tuple[str, str, int]  # (sweep name, array job id, number of tasks)


@dataclass
class _Jobs:
    """The job arrays the stores record: really run (true / exit 3), held then cancelled, held (active) throughout."""

    n_done: int
    n_failed: int
    n_cancel: int
    n_active: int
    done: str
    failed: str
    cancelled: str
    active: str
    big: List[str]  # held arrays of 1,000, cancelled whole

    def small(self) -> List[Sweep]:
        return [
            ("s-done", self.done, self.n_done),
            ("s-failed", self.failed, self.n_failed),
            ("s-cancelled", self.cancelled, self.n_cancel),
            ("s-active", self.active, self.n_active),
        ]

    def sweeps(self, size: int) -> List[Sweep]:
        """The sweeps of a store of `size` runs."""
        return self.small() + [(f"s-big{k}", j, 1000) for k, j in enumerate(self.big[: size // 1000 - 1])]


def _sbatch_array(ses: Session, n: int, wrap: str, hold: bool = False, name: str = "benchstore") -> str:
    cmd = [
        ses.sbatch,
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
    ses.submitted.append(job)
    return job


def _sacct_states(job_ids: Sequence[str]) -> Dict[str, int]:
    from launcher import slurm

    out = sh(["sacct", "-X", "-n", "-P", "-o", slurm.SACCT_FORMAT, "-j", ",".join(job_ids)]).stdout
    counts: Dict[str, int] = {}
    for info in slurm.parse_sacct(out).values():
        s = slurm.base_state(info.state)
        counts[s] = counts.get(s, 0) + 1
    return counts


def _submit_jobs(ses: Session, biggest: int, small_only: bool) -> _Jobs:
    """The job arrays, submitted; returns once the ones that run have ended and reached accounting."""
    n_done, n_failed, n_active = (150 if small_only else 850), 50, 50
    n_cancel = 1000 - n_done - n_failed - n_active
    t0 = time.time()
    # (held ones first: while the controller starts the runnable tasks it answers sbatch slowly)
    cancel_job = _sbatch_array(ses, n_cancel, "true", hold=True)
    big_jobs = [_sbatch_array(ses, 1000, "true", hold=True) for _ in range(biggest // 1000 - 1)]
    active_job = _sbatch_array(ses, n_active, "true", hold=True)
    done_job = _sbatch_array(ses, n_done, "true")
    failed_job = _sbatch_array(ses, n_failed, "exit 3")
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
    return _Jobs(n_done, n_failed, n_cancel, n_active, done_job, failed_job, cancel_job, active_job, big_jobs)


def populate(ses: Session, path: Path, sweeps: List[Sweep], config: Dict[str, Any]) -> None:
    """Sweeps of runs recorded exactly as `danlu submit` records them (launcher.store API), with real job ids.

    sweeps: (name, array job id, number of tasks). Every attempt is left PENDING with its job id, as
    `danlu submit` leaves it: the first `danlu status` reconciles them with Slurm."""
    from launcher.layout import SweepLayout
    from launcher.store import NewRun, Store

    store = Store(path)
    for name, job, n in sweeps:
        tag = f"{secrets.token_hex(6)}:0"
        sweep = SweepLayout(ses.tmp / "store-runs" / name)
        runs = [
            NewRun(
                run=f"{name}/{i}",
                idx=i,
                overrides=["experiment=tiny_dpo", "cluster=testcluster", f"+args.point={i}"],
                config=dict(config, args=dict(config.get("args", {}), point=i)),
                run_dir=str(sweep.run(i).root),
                workdir=str(REPO / "examples" / "tiny_dpo"),
                git_commit="0" * 40,
                git_dirty=False,
                partition="debug-A10-01",
                nodes=1,
                cluster_kind="slurm",
                script=str(sweep.scripts_dir / "x.sbatch"),
                command="accelerate launch train.py",
                tag=tag,
                array_task=i,
            )
            for i in range(n)
        ]
        assert store.create_sweep(
            name, "tiny_dpo", "testcluster", ["experiment=tiny_dpo"], ["danlu", "submit"], str(sweep.root), runs
        )
        store.record_job(tag, job, True)
    store.close()


def _fresh(snap: Path, store: Path) -> None:
    """The store back to the snapshot: every run still PENDING in it."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    shutil.copy(snap, store)


def _timed_status(
    row: Row, cmd: List[str], env: Dict[str, str], reps: int, fresh: Optional[Tuple[Path, Path]] = None
) -> Row:
    """`reps` timings of a status command into `row` (from the snapshot each time when `fresh`: (snap, store))."""
    calls: Dict[str, int] = {}
    for _ in range(reps):
        if fresh:
            _fresh(*fresh)
        wall, cpu, _done = timed(cmd, env=env)
        row.samples.append(wall)
        row.cpu.append(cpu)
        calls = slurm_calls(env)
    row.calls = counts_text(calls)
    return row


def _states(env: Dict[str, str], size: int) -> str:
    """`danlu status --all --json`'s runs by state; they must be `size`."""
    counts: Dict[str, int] = {}
    for row in json.loads(sh([DANLU, "status", "--all", "--json"], env=env).stdout):
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    slurm_calls(env)
    if sum(counts.values()) != size:
        raise RuntimeError(f"status lists {sum(counts.values())} runs, not {size}: {counts}")
    return "states: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


def _raw_sacct(res: Results, ids: List[str], reps: int) -> Row:
    """One raw sacct for the same job ids: what danlu's first look asks, without the rest of its work."""
    from launcher import slurm

    raw = res.add(Row("1", "", f"one raw `sacct` for the same {len(ids)} (array) job ids", calls="1 sacct"))
    lines = 0
    for _ in range(reps):
        wall, cpu, done = timed(["sacct", "-X", "-D", "-n", "-P", "-o", slurm.SACCT_FORMAT, "-j", ",".join(ids)])
        raw.samples.append(wall)
        raw.cpu.append(cpu)
        lines = done.stdout.count(chr(10))
    raw.note = f"{lines} lines"
    return raw


def _sacct_per_call(*rows: Row) -> int:
    found = [re.search(r"(\d+) sacct", r.calls) for r in rows]
    return max(int(m.group(1)) if m else 0 for m in found)


def _targets(res: Results, size: int, first: Row, steady: Row, raw: Row) -> None:
    res.ratio(
        "1",
        f"status --all, {size:,} runs ({res.version}): first look {first.median / raw.median:.1f}x, "
        f"steady {steady.median / raw.median:.1f}x one raw sacct (medians)",
    )
    sacct_calls = _sacct_per_call(first, steady)
    if size == 100000:
        res.target(
            f"`danlu status --all` with 100,000 runs < 1 s steady, < 2 s first look ({res.version})",
            f"steady {fmt(steady.median)} s, first look {fmt(first.median)} s (median wall); "
            f"{sacct_calls} sacct per call",
            steady.median < 1 and first.median < 2,
        )
    if size == 10000:
        res.target(
            f"`danlu status --all` with 10,000 runs <= 2x one raw sacct ({res.version})",
            f"steady {steady.median / raw.median:.1f}x ({fmt(steady.median)} vs {fmt(raw.median)} s), first "
            f"look {first.median / raw.median:.1f}x",
            steady.median <= 2 * raw.median,
        )


def _where_time_goes(res: Results, env: Dict[str, str], snap: Path, size: int) -> None:
    """Where one first look and one steady status of this size spend their time (DANLU_TIMINGS)."""
    timings = Path(env["DANLU_BENCH_ROOT"]) / "timings.json"
    for label, fresh in (("first look", True), ("steady", False)):
        if fresh:
            _fresh(snap, Path(env["DANLU_STORE"]))
        t0 = time.time()
        sh([DANLU, "status", "--all"], env=dict(env, DANLU_TIMINGS=str(timings)))
        t = json.loads(timings.read_text())
        parts = dict(t["phases"], **{"start (interpreter, imports)": t["entered"] - t0})
        text = ", ".join(f"{k} {fmt(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
        res.add(Row("1", "", f"  where one {label} of {size:,} runs goes", samples=[time.time() - t0], note=text))
        res.figures[f"status{size}_{'first' if fresh else 'steady'}_parts"] = text
    slurm_calls(env)


def _one_size(ses: Session, res: Results, jobs: _Jobs, size: int, config: Dict[str, Any], reps: int) -> None:
    """The rows of one store size: first look, steady, active only, one raw sacct, and where the time goes."""
    from launcher import slurm

    sweeps = jobs.sweeps(size)
    env = ses.private_env(f"status-{size}")
    snap = Path(env["DANLU_BENCH_ROOT"]) / "snapshot.sqlite"
    t_pop = time.time()
    populate(ses, snap, sweeps, config)
    log(f"   {size:,} runs recorded in {time.time() - t_pop:.1f}s")
    store = Path(env["DANLU_STORE"])
    store.parent.mkdir(parents=True, exist_ok=True)
    danlu = [DANLU, "status", "--all"]
    # first look: every run still PENDING in the store; a fresh copy for each repetition
    r1 = res.add(Row("1", f"`danlu status --all`, {size:,} runs, first look (all to reconcile)", "danlu"))
    _timed_status(r1, danlu, env, reps, fresh=(snap, store))
    r2 = res.add(Row("1", f"`danlu status --all`, {size:,} runs, steady (only {jobs.n_active} active)", "danlu"))
    _timed_status(r2, danlu, env, reps)
    r2.note = _states(env, size)
    r3 = res.add(Row("1", f"`danlu status` (active only), {size:,} runs, steady", "danlu"))
    _timed_status(r3, danlu[:2], env, reps)
    raw = _raw_sacct(res, slurm.query_ids([j for _, j, _ in sweeps]), reps)
    _targets(res, size, r1, r2, raw)
    _where_time_goes(res, env, snap, size)
    res.figures[f"status{size}_first"], res.figures[f"status{size}_steady"] = r1.median, r2.median
    res.figures[f"status{size}_sacct"] = raw.median
    log(
        f"   {size:,}: first look {r1.median:.2f}s ({r1.calls}), steady {r2.median:.2f}s ({r2.calls}), "
        f"raw sacct {raw.median:.2f}s"
    )


def measure(ses: Session, res: Results, sizes: Sequence[int], reps: int, small_only: bool = False) -> None:
    """`danlu status --all` with each of `sizes` runs in the store (first look, steady), next to one raw sacct."""
    from launcher.spec.compose import Composer

    log(f"2. danlu status with {', '.join(f'{n:,}' for n in sizes)} runs in the store")
    jobs = _submit_jobs(ses, max(sizes), small_only)
    config = Composer().runs(["experiment=tiny_dpo", "cluster=testcluster"])[0].resolved
    res.notes.append(
        f"status store ({res.version}): real jobs on the test cluster recorded through launcher.store as `danlu "
        f"submit` records them: {jobs.n_done} COMPLETED, {jobs.n_failed} FAILED, {jobs.n_cancel} CANCELLED, "
        f"{jobs.n_active} PENDING (held), the rest CANCELLED (held arrays of 1,000 cancelled whole); 'first look' = "
        f"every attempt still PENDING in the store (the first status after the jobs ended), 'steady' = finished "
        f"runs already reconciled, only the held ones active"
    )
    for size in sizes:
        _one_size(ses, res, jobs, size, config, reps)
    cancel([jobs.active], arrays=True)
