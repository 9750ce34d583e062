#!/usr/bin/env python3
"""How much `danlu status` loads slurmctld: its RPCs per refresh with N active runs and per minute of `--watch`,
counted by `sdiag`, next to what a researcher runs instead (`squeue --me` in a loop, as `watch squeue` does) and
submitit's own polling of the same jobs (issue 18, controller load).

    python bench/status_rpcs.py [--runs 1000] [--watch-s 60] [--out FILE]
    (bench/run.py runs it too: RESULTS.md section 2)

The N runs are one danlu sweep of held jobs (tiny_dpo, `--hold`: they stay PENDING, active, for the whole
measurement) on the test cluster (tests/cluster/up.sh); the script refuses to measure while other jobs are queued
and cancels its own at the end. Between `sdiag -r` and the reading only the command measured runs (sdiag's own
REQUEST_STATS_INFO and the nodes' periodic registrations are left out). sacct asks slurmdbd, not slurmctld: its
calls are counted apart, by the commands danlu ran (DANLU_TRACE_SLURM) and by submitit's watcher.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script too: the bench package
from bench.job_rpcs import rpc_counts, sh  # noqa: E402
from bench.shell import trace_calls  # noqa: E402

DANLU = str(REPO / ".venv" / "bin" / "danlu")
# sdiag's own, and the nodes' periodic registration (slurmd's, whatever runs): not the command's
OWN = {"REQUEST_STATS_INFO", "MESSAGE_NODE_REGISTRATION_STATUS"}
Measured = Tuple[str, float, str, str]  # (what, slurmctld RPCs, by type, client commands run)


def delta(before: Dict[str, int], after: Dict[str, int]) -> Dict[str, int]:
    out = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    return {k: v for k, v in sorted(out.items()) if v > 0 and k not in OWN}


def counted(action: Callable[[], None]) -> Dict[str, int]:
    sh(["sdiag", "-r"])
    before = rpc_counts()
    action()
    return delta(before, rpc_counts())


def _what(counts: Dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _private_env(tmp: Path) -> Dict[str, str]:
    return dict(
        os.environ,
        DANLU_HOME=str(tmp / "home"),
        DANLU_STORE=str(tmp / "home" / "store.sqlite"),
        DANLU_RUNS_DIR=str(tmp / "runs"),
        NO_COLOR="1",
        DANLU_TRACE_SLURM=str(tmp / "trace"),
    )


def _submit_held(runs: int, danlu: str, env: Dict[str, str]) -> List[str]:
    """One danlu sweep `rpcs` of `runs` held jobs: its array job ids."""
    out = sh(
        [
            danlu,
            "submit",
            "experiment=tiny_dpo",
            "cluster=testcluster",
            "resources.extra_sbatch=[--hold]",
            "-m",
            f"args.seed=range(0,{runs})",
            "--name",
            "rpcs",
            "--json",
        ],
        env=env,
    )
    return sorted({r["job_id"].split("_")[0] for r in json.loads(out)["runs"]})


def _per_minute(what: str, action: Callable[[], None], watch_s: float, clients: str) -> Measured:
    """The RPCs of `action` (which lasts watch_s seconds), given per minute."""
    got = counted(action)
    return what, round(sum(got.values()) * 60 / watch_s), _what(got), clients


def _watched(watch_s: float, danlu: str, env: Dict[str, str], trace: Path) -> Measured:
    """`danlu status --watch` for watch_s seconds, per minute, with the Slurm commands it ran."""

    def watch() -> None:
        p = subprocess.Popen(
            [danlu, "status", "rpcs", "--watch"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(watch_s)
        p.terminate()
        p.wait()

    what, per_min, by_type, _ = _per_minute(
        f"`danlu status --watch`, per minute ({watch_s:.0f} s measured)", watch, watch_s, ""
    )
    return what, per_min, by_type, _what(trace_calls(trace))


def _squeue_loop(watch_s: float) -> Measured:
    """What `watch squeue --me` asks in watch_s seconds, per minute."""

    def squeue_loop() -> None:
        end = time.monotonic() + watch_s
        while time.monotonic() < end:
            subprocess.run(["squeue", "--me"], capture_output=True)
            time.sleep(2.0)  # watch(1)'s default interval

    return _per_minute("`watch squeue --me` (every 2 s), per minute", squeue_loop, watch_s, "squeue (one per refresh)")


def _submitit_poll(runs: int, watch_s: float, ids: List[str], tmp: Path) -> Measured:
    """submitit polling the state of the same jobs every 2 s for watch_s seconds, per minute."""

    def submitit_poll() -> None:
        import submitit

        jobs = [submitit.SlurmJob(folder=tmp / "submitit", job_id=f"{j}_{k}") for j in ids for k in range(runs)][:runs]
        end = time.monotonic() + watch_s
        while time.monotonic() < end:
            [job.state for job in jobs]  # noqa: B018 - what a script waiting on its jobs calls
            time.sleep(2.0)

    what = f"submitit: `.state` of {runs:,} jobs every 2 s, per minute"
    return _per_minute(what, submitit_poll, watch_s, "sacct (its watcher, throttled)")


def measure(runs: int, watch_s: float, danlu: str, tmp: Path) -> List[Measured]:
    """(what, slurmctld RPCs, by type, client commands run) for one status refresh with `runs` held runs, then (unless
    watch_s is 0) --watch, `watch squeue --me` and submitit polling the same jobs, each for watch_s seconds and
    given per minute. The runs are submitted here and cancelled."""
    env = _private_env(tmp)
    trace = Path(env["DANLU_TRACE_SLURM"])
    ids = _submit_held(runs, danlu, env)
    trace_calls(trace)
    rows: List[Measured] = []
    try:
        sh([danlu, "status", "rpcs"], env=env)  # the first look records every run's pending state
        trace_calls(trace)
        once = counted(lambda: sh([danlu, "status", "rpcs"], env=env))
        rows.append(
            (
                f"`danlu status` refresh, {runs:,} active runs",
                sum(once.values()),
                _what(once),
                _what(trace_calls(trace)),
            )
        )
        if not watch_s:
            return rows
        rows.append(_watched(watch_s, danlu, env, trace))
        rows.append(_squeue_loop(watch_s))
        rows.append(_submitit_poll(runs, watch_s, ids, tmp))
    finally:
        subprocess.run(["scancel", *ids], capture_output=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--watch-s", type=float, default=60.0)
    ap.add_argument("--out", help="also write the table (markdown) into this file")
    args = ap.parse_args()
    if sh(["squeue", "-h", "-o", "%i"]).strip():
        print("error: other jobs are queued on the test cluster; their RPCs would be counted too", file=sys.stderr)
        print("hint: wait until squeue is empty (or scancel them), then run this again", file=sys.stderr)
        return 2
    rows = measure(args.runs, args.watch_s, DANLU, Path(tempfile.mkdtemp(prefix="danlu-status-rpcs-")))
    head = ["what", "slurmctld RPCs", "by type (sdiag)", "client commands run"]
    table = "\n".join(
        ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        + ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    )
    version = sh(["sinfo", "--version"]).strip()
    text = (
        f"# slurmctld load of `danlu status` ({version}, {args.runs:,} held jobs, one array)\n\n"
        f"One run of `python bench/status_rpcs.py --runs {args.runs} --watch-s {args.watch_s:.0f}`; written by "
        f"the script (`--out`).\n\n{table}\n\nTargets (issue 18): <= 2 per refresh whatever the number of runs; "
        f"<= 1 per second (60 per minute) for --watch.\n"
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
