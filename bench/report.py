"""`danlu report` over 100 runs x 10,000 steps x 3 metrics, and `danlu status` with running runs' metrics, side by
side with the alternative, in one run. No Slurm needed: the runs are recorded as finished (report) or their state
is measured after the refresh (status), so the figures are danlu's own work.

    python bench/report.py            # 100 runs x 10,000 steps; status with 1,000 runs
    python bench/report.py --quick    # 20 runs x 2,000 steps; status with 200 runs

Rows:
  * report, first look: nothing read before (the cache empty): every log parsed once;
  * report, again: the logs unchanged (what a researcher does while a sweep runs: report, wait, report);
  * report after 100 more steps per run: only the new bytes parsed;
  * the alternative: a notebook's plain loop (open every log, a regex per line, float per value), in-process;
  * status: one refresh of N running runs with and without their step and loss (the tails of N logs), with a
    real squeue and sacct where a test cluster is reachable (bash tests/cluster/up.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from launcher.layout import RunLayout  # noqa: E402
from launcher.state.names import ACTIVE  # noqa: E402

DANLU = str(Path(sys.executable).parent / "danlu")


def write_logs(root: Path, runs: int, steps: int, start: int = 1) -> List[Path]:
    """A run dir per run with rank 0's log of `steps` step lines (3 metrics, as tiny_dpo prints them)."""
    rng = random.Random(0)
    dirs = []
    for i in range(runs):
        run_dir = root / "runs" / "bench" / str(i)
        log = RunLayout(run_dir).attempt(1).restart(0).rank_log(0)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            for s in range(start, start + steps):
                f.write(
                    f"step={s} loss={1 / (s + 1) + rng.random() * 0.01:.5f} implicit_acc={rng.random():.3f} "
                    f"lr={1e-5 * (1 - s / 1e6):.4g} rank=0 world_size=2\n"
                )
        dirs.append(run_dir)
    return dirs


def record(env: Dict[str, str], dirs: List[Path], state: str = "COMPLETED") -> None:
    """The runs in a private store, as `danlu submit` records them, then in `state`."""
    os.environ.update(env)
    from launcher.store import NewRun, Store

    store = Store(Path(env["DANLU_STORE"]))
    runs = [
        NewRun(
            run=f"bench/{i}",
            idx=i,
            overrides=[f"args.seed={i}"],
            config={"args": {"seed": i}},
            run_dir=str(d),
            workdir=str(REPO),
            git_commit="0" * 40,
            git_dirty=False,
            partition="local",
            nodes=1,
            cluster_kind="local",
            script=str(d / "x.sh"),
            command="python train.py",
            tag="t:0",
            array_task=None,
        )
        for i, d in enumerate(dirs)
    ]
    assert store.create_sweep(
        "bench", "tiny_dpo", "local", ["args.seed=..."], ["danlu", "submit"], str(dirs[0].parent), runs
    )
    store.record_job("t:0", "local-1", False)
    final = state not in ACTIVE
    store.update_attempts(
        [
            {"run": f"bench/{i}", "attempt": 1, "state": state, "final": final, "nodelist": "node1"}
            for i in range(len(dirs))
        ]
    )
    store.close()


def timed(cmd: List[str], env: Dict[str, str], reps: int) -> List[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        done = subprocess.run(cmd, env=dict(os.environ, **env), capture_output=True, text=True)
        out.append(time.perf_counter() - t)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {done.stderr[-2000:]}")
    return out


def notebook_loop(dirs: List[Path]) -> Dict[str, float]:
    """What one writes by hand: every log, a regex per line, the best loss per run."""
    line = re.compile(r"step=(\d+) loss=([\d.eE+-]+) implicit_acc=([\d.]+) lr=([\d.eE+-]+)")
    best = {}
    for d in dirs:
        losses = []
        for p in sorted(d.glob("logs/attempt-*/restart-*/rank0.log")):
            with open(p) as f:
                for ln in f:
                    m = line.search(ln)
                    if m:
                        losses.append((int(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(4))))
        best[str(d)] = min(x[1] for x in losses)
    return best


def slurm_reachable() -> bool:
    return subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0 if shutil.which("sinfo") else False


def status_rows(env: Dict[str, str], with_metrics: bool, reps: int, ask_slurm: bool) -> List[float]:
    """One `danlu status` refresh of N RUNNING runs, in-process: the store read, one squeue and one sacct for N job
    ids (as state/reconcile.refresh asks them: sacct in a thread; real calls when a cluster is reachable), the
    table; with metrics, the log tails are read by metrics.live.Prefetch while Slurm answers, as `danlu status`
    does. Slurm's answers are not written back, so every repeat sees the same N running runs."""
    os.environ.update(env)
    import threading

    from launcher import slurm
    from launcher.metrics.live import Prefetch, add_progress
    from launcher.store import Store
    from launcher.views.table import filter_items, items, render_plain, select

    store = Store(Path(env["DANLU_STORE"]))
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        selected = select(store, [])
        early = Prefetch(selected) if with_metrics else None
        if ask_slurm:
            ids = [str(k + 1) for k in range(len(selected))]
            acct = threading.Thread(target=slurm.sacct, args=(ids,))
            acct.start()
            slurm.squeue(ids)
            acct.join()
        shown = filter_items(items(selected), [], False, None)
        metric = add_progress(shown, early) if with_metrics else None
        text = render_plain(shown, metric)
        out.append(time.perf_counter() - t)
        assert ("STEP" in text) == with_metrics and len(shown) > 0
        assert not with_metrics or all(it["step"] == 1000 for it in shown)
    store.close()
    return out


def fmt(xs: List[float]) -> str:
    return f"min {min(xs):.3f} s, median {statistics.median(xs):.3f} s"


def _report_rows(root: Path, env: Dict[str, str], runs: int, steps: int, reps: int) -> float:
    """`danlu report` over `runs` logs of `steps` steps: first look, again, after 100 more steps; the notebook
    loop; danlu --help, whose median (the command's start-up) it returns."""
    dirs = write_logs(root, runs, steps)
    record(env, dirs)
    size = sum(p.stat().st_size for d in dirs for p in d.rglob("rank0.log"))
    print(f"# danlu report: {runs} runs x {steps:,} steps x 3 metrics ({size / 1e6:.0f} MB of logs)")
    cmd = [DANLU, "report", "bench"]
    cold = []
    for _ in range(max(1, reps // 2)):
        shutil.rmtree(Path(env["DANLU_HOME"]) / "cache", ignore_errors=True)
        cold += timed(cmd, env, 1)
    warm = timed(cmd, env, reps)
    write_logs(root, runs, 100, start=steps + 1)
    grown = timed(cmd, env, 1)
    t = time.perf_counter()
    best = notebook_loop(dirs)
    loop = [time.perf_counter() - t]
    report = json.loads(
        subprocess.run([*cmd, "--json"], env=dict(os.environ, **env), capture_output=True, text=True, check=True).stdout
    )
    assert len(report["runs"]) == runs and all(r["steps"] == steps + 100 for r in report["runs"])
    assert len(best) == runs
    floor = timed([DANLU, "--help"], env, reps)
    print(f"report, first look (cache empty)     {fmt(cold)}")
    print(f"report, again (logs unchanged)       {fmt(warm)}")
    print(f"report, after 100 more steps per run {fmt(grown)}")
    print(f"notebook loop (regex per line, in-process, no table) {fmt(loop)}")
    print(f"danlu --help (the command's floor)   {fmt(floor)}")
    print(
        f"ratios: first look {statistics.median(cold) / loop[0]:.2f}x the notebook loop; again "
        f"{statistics.median(warm) / loop[0]:.2f}x; target: again < 2 s: "
        f"{'met' if statistics.median(warm) < 2 else 'MISSED'}"
    )
    return statistics.median(floor)


def _status_rows(root: Path, env: Dict[str, str], status_runs: int, reps: int, cmd_floor: float) -> None:
    """One `danlu status` refresh of `status_runs` running runs, each with a log of 1,000 steps, without and with
    their metrics; cmd_floor: danlu --help's median, the command's start-up."""
    senv = dict(env, DANLU_HOME=str(root / "shome"), DANLU_STORE=str(root / "shome" / "store.sqlite"))
    sdirs = write_logs(root / "s", status_runs, 1000)
    record(senv, sdirs, state="RUNNING")
    ask = slurm_reachable()
    without = status_rows(senv, False, reps, ask)
    with_m = status_rows(senv, True, reps, ask)
    print(
        f"\n# danlu status: one refresh of {status_runs:,} running runs, each with a log of 1,000 steps "
        + (
            f"(one real squeue + sacct for {status_runs:,} job ids)"
            if ask
            else "(no Slurm reachable: without squeue and sacct)"
        )
    )
    print(f"without metrics {fmt(without)}")
    print(
        f"with STEP, LOSS {fmt(with_m)} (+{(statistics.median(with_m) - statistics.median(without)) * 1e3:.0f} "
        f"ms: {status_runs:,} log tails, read while Slurm answers)"
    )
    ratio = (cmd_floor + statistics.median(with_m)) / (cmd_floor + statistics.median(without))
    print(
        f"whole command (its start-up, danlu --help, added to both): {ratio:.2f}x without (target <= 1.2x: "
        f"{'met' if ratio <= 1.2 else 'MISSED'})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--markdown", metavar="FILE", help="also write what is printed into FILE (bench/REPORT.md)")
    args = ap.parse_args()
    if args.markdown:
        return _into_markdown(
            Path(args.markdown), [a for a in sys.argv[1:] if not a.startswith("--markdown") and a != args.markdown]
        )
    runs, steps, status_runs = (20, 2000, 200) if args.quick else (100, 10000, 1000)
    root = Path(tempfile.mkdtemp(prefix="danlu-bench-report-"))
    try:
        env = {
            "DANLU_HOME": str(root / "home"),
            "DANLU_STORE": str(root / "home" / "store.sqlite"),
            "DANLU_RUNS_DIR": str(root / "runs"),
            "NO_COLOR": "1",
        }
        cmd_floor = _report_rows(root, env, runs, steps, args.reps)
        _status_rows(root, env, status_runs, args.reps, cmd_floor)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _into_markdown(path: Path, argv: List[str]) -> int:
    """Run this benchmark again (same arguments) and keep its output, with the commit and machine, in `path`."""
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        return done.returncode
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    path.write_text(
        f"# `danlu report` and `danlu status` with metrics: one run of `python bench/report.py "
        f"{' '.join(argv)}`\n\nAt commit {commit}, {time.strftime('%Y-%m-%d')}, on {os.cpu_count()} "
        f"CPUs; written by the script itself (`--markdown`), nothing typed by hand.\n\n```\n"
        f"{done.stdout}```\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
