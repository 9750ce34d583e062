"""The store under fire: danlu processes on three paths to one store (the file server's own disk and two sshfs
mounts, as two login nodes see an NFS home) submit, look, cancel and rerun against the test cluster, while a
killer sends SIGKILL to random ones at random moments, for a bounded time.

Afterwards: SQLite's integrity check is `ok`; every run a submit printed is in the store; no state once final
ever changed (a watcher reads the store all along); every job of the test in Slurm's queue is known to the store;
and the lock's audit log (DANLU_LOCK_AUDIT) shows no two holders at once. The figures are printed, and written to
$DANLU_TORTURE_REPORT when it is set.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
from danlu_helpers import REPO, private_env
from lock_audit import double_holders, read_audit
from sshfs_helpers import mounted

from launcher.store import Store

# many danlu processes and SIGKILLs for minutes: alone, beside no test whose timing it would disturb (tests/run.sh)
pytestmark = [pytest.mark.slurm, pytest.mark.disruptive]

shared = pytest.fixture(scope="module", name="shared")(mounted)

WORKERS = 6
SECONDS = float(os.environ.get("DANLU_TORTURE_SECONDS", "180"))
KILL_EVERY = (0.2, 1.5)  # seconds between two kills, drawn uniformly


@dataclass
class Tally:
    ops: Dict[str, int] = field(default_factory=dict)
    finished: Dict[str, int] = field(default_factory=dict)
    kills: int = 0
    killed_ops: Dict[str, int] = field(default_factory=dict)
    printed_runs: Set[str] = field(default_factory=set)
    sweeps: List[str] = field(default_factory=list)
    failures: List[str] = field(default_factory=list)  # exits other than 0 and SIGKILL, with their stderr
    live: Dict[int, Tuple[subprocess.Popen, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _danlu(env: Dict[str, str], args: List[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "launcher.cli", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _worker(k: int, env: Dict[str, str], prefix: str, tally: Tally, deadline: float) -> None:
    rng = random.Random(k)
    n = 0
    while time.monotonic() < deadline:
        with tally.lock:
            known = list(tally.sweeps)
        op = rng.choice(["submit", "submit", "status", "cancel", "rerun"] if known else ["submit"])
        if op == "submit":
            n += 1
            name = f"{prefix}{k}-{n}"
            seeds = rng.choice(["1", "1,2"])
            args = ["submit", "-m", "experiment=tiny_dpo", "cluster=testcluster", "--name", name,
                    f"args.seed={seeds}", "resources.extra_sbatch=[--hold]"]  # fmt: skip
            with tally.lock:
                tally.sweeps.append(name)
        elif op == "status":
            args = ["status", "--all", "--json"]
        elif op == "cancel":
            args = ["cancel", rng.choice(known)]
        else:
            args = ["rerun", rng.choice(known), "--state", "CANCELLED,UNSUBMITTED"]
        proc = _danlu(env, args)
        with tally.lock:
            tally.ops[op] = tally.ops.get(op, 0) + 1
            tally.live[proc.pid] = (proc, op)
        out, err = proc.communicate(timeout=600)
        with tally.lock:
            tally.live.pop(proc.pid, None)
            if op == "submit":
                tally.printed_runs |= {line.split("\t")[0] for line in out.splitlines() if "\t" in line}
            if proc.returncode == 0:
                tally.finished[op] = tally.finished.get(op, 0) + 1
            elif proc.returncode != -signal.SIGKILL and not _expected_refusal(op, err):
                tally.failures.append(f"{' '.join(args)} -> {proc.returncode}: {err.strip()[-600:]}")


def _expected_refusal(op: str, err: str) -> bool:
    """Answers that are right for the moment the verb ran: nothing to cancel or rerun, a sweep whose submit was
    killed before it recorded the sweep, another rerun of the same runs first."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    if len(lines) != 1:
        return False
    said = lines[0]
    if op in ("cancel", "rerun"):
        words = ("no sweep or run named", "nothing to cancel", "nothing to rerun", "got there first")
        return any(w in said for w in words)
    return False


def _killer(tally: Tally, deadline: float, stop: threading.Event) -> None:
    rng = random.Random(99)
    while time.monotonic() < deadline and not stop.is_set():
        time.sleep(rng.uniform(*KILL_EVERY))
        with tally.lock:
            live = list(tally.live.values())
        if not live:
            continue
        proc, op = rng.choice(live)
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        with tally.lock:
            tally.kills += 1
            tally.killed_ops[op] = tally.killed_ops.get(op, 0) + 1


def _watch(store_path: Path, seen_final: Dict[Tuple[str, int], str], changed: List[str], stop: threading.Event) -> None:
    """Read every attempt's state through the store (its lock, as any danlu): a state once final stays."""
    store = Store(store_path)
    reads = 0
    while not stop.is_set():
        for r in store.query("SELECT run, attempt, state, final FROM attempts"):
            key = (r["run"], r["attempt"])
            if key in seen_final and (not r["final"] or r["state"] != seen_final[key]):
                changed.append(f"{key}: {seen_final[key]} -> {r['state']} (final={r['final']})")
            if r["final"] and key not in seen_final:
                seen_final[key] = r["state"]
        reads += 1
        time.sleep(0.3)
    store.close()


def _queued(prefix: str) -> Dict[str, str]:
    """Base job id -> comment of every job of this test Slurm knows."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "--me", "-o", "%A|%F|%j|%k"], capture_output=True, text=True, check=True
    ).stdout
    jobs = {}
    for line in out.splitlines():
        job, array, name, comment = line.split("|", 3)
        if name.startswith(prefix):
            base = array if array not in ("", "N/A", "0") else job
            jobs[base] = comment
    return jobs


def test_killed_danlu_processes_on_three_paths_never_corrupt_forget_or_misjudge(
    slurm_cluster, shared, tmp_path, monkeypatch
):
    folder = shared.mounts[0] / "torture"
    folder.mkdir()
    Store(folder / "store.sqlite").close()  # made by a login node: network mode, wherever it is opened
    paths = [shared.export / "torture" / "store.sqlite"] + [m / "torture" / "store.sqlite" for m in shared.mounts]
    audit = tmp_path / "lock-audit"
    monkeypatch.setenv("DANLU_LOCK_AUDIT", str(audit))  # the watcher in this process takes and breaks the lock too
    base = dict(os.environ, **private_env(tmp_path), PYTHONPATH=str(REPO), DANLU_LOCK_AUDIT=str(audit))
    base["PATH"] = f"{Path(sys.executable).parent}:{base['PATH']}"
    base.pop("DANLU_STORE_FS", None)
    envs = [dict(base, DANLU_STORE=str(paths[k % len(paths)])) for k in range(WORKERS)]
    prefix = f"tt{secrets.token_hex(2)}-"
    tally = Tally()
    seen_final: Dict[Tuple[str, int], str] = {}
    changed: List[str] = []
    stop = threading.Event()
    started = time.monotonic()
    deadline = started + SECONDS
    watcher = threading.Thread(target=_watch, args=(paths[2], seen_final, changed, stop), daemon=True)
    watcher.start()
    threads = [threading.Thread(target=_worker, args=(k, envs[k], prefix, tally, deadline)) for k in range(WORKERS)]
    threads.append(threading.Thread(target=_killer, args=(tally, deadline, stop)))
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=SECONDS + 900)
        # one more look from each path, with no submitter alive: crash recovery settles every SUBMITTING run
        for env in envs[: len(paths)]:
            last = subprocess.run(
                [sys.executable, "-m", "launcher.cli", "status", "--all", "--json"],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert last.returncode == 0, last.stderr
        time.sleep(1)
        stop.set()
        watcher.join(timeout=60)
        minutes = (time.monotonic() - started) / 60
        store = Store(paths[0])
        integrity = store.query("PRAGMA integrity_check")[0][0]
        rows = store.query("SELECT run, attempt, state, final, job_id, array_job_id FROM attempts")
        in_store = {r["run"] for r in rows}
        known_jobs = {r["array_job_id"] or r["job_id"] for r in rows if r["job_id"]}
        store.close()
        for r in rows:
            key = (r["run"], r["attempt"])
            if key in seen_final and r["state"] != seen_final[key]:
                changed.append(f"{key}: {seen_final[key]} -> {r['state']} (at the end)")
        lost = sorted(tally.printed_runs - in_store)
        queued = _queued(prefix)
        unknown = sorted(j for j in queued if j not in known_jobs)
        holders = double_holders(read_audit(audit))
        figures = {
            "processes": sum(tally.ops.values()),
            "kills": tally.kills,
            "operations": tally.ops,
            "finished": tally.finished,
            "killed": tally.killed_ops,
            "minutes": round(minutes, 1),
            "workers": WORKERS,
            "runs": len(in_store),
            "attempts": len(rows),
            "jobs_queued": len(queued),
            "integrity": integrity,
            "runs_lost": len(lost),
            "final_states_changed": len(changed),
            "unknown_jobs": len(unknown),
            "double_holders": len(holders),
            "lock_takings": sum(1 for e in read_audit(audit) if e.event == "acquire"),
            "other_failures": len(tally.failures),
        }
        print("torture:", json.dumps(figures))
        for failure in tally.failures:
            print("failure:", failure)
        report = os.environ.get("DANLU_TORTURE_REPORT")
        if report:
            Path(report).write_text(json.dumps(figures, indent=1) + "\n")
        assert integrity == "ok"
        assert lost == [], lost
        assert changed == [], changed
        assert unknown == [], (unknown, {j: queued[j] for j in unknown})
        assert holders == [], holders
        assert tally.failures == [], tally.failures
        assert tally.kills >= 20 and tally.ops.get("submit", 0) >= 10, figures  # the test really fired
    finally:
        stop.set()
        jobs = _queued(prefix)
        if jobs:
            subprocess.run(["scancel", *jobs], capture_output=True)
