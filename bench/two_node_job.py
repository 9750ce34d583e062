"""Section 5's job: tiny_dpo on 2 nodes x 2 ranks, submitted by danlu or as the hand-written script of
bench/handwritten.sbatch, and watched from its logs and squeue: when it started, its first step, its ranks up, the
injected crash, its end."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from bench.paths import BENCH, DANLU, REPO, VENV_BIN, handwritten_script
from bench.session import Session
from bench.shell import cancel, job_state, sh
from launcher.state.names import ACTIVE

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
# the launch overhead's job: the same, no crash, a few steps: ends by itself right after its first steps
LAUNCH_ARGS_OVERRIDE = {"max_train_steps": 3, "crash_at_step": -1, "sleep_per_step": 0}
FIRST_STEP, CRASH, RANKS_UP = b"step=1 ", b"injected crash", b"rank=3 world_size=4 local"


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


def _ended(jt: JobTimes, now: float) -> bool:
    """Ask squeue about the job: note when it started; True once it is no longer active (its end noted)."""
    state = job_state(jt.job_id)
    if state == "RUNNING" and jt.started is None:
        jt.started = now
    if state not in ACTIVE:  # GONE: squeue no longer lists it
        jt.ended, jt.state = now, state
        return True
    return False


def watch_job(jt: JobTimes, root: Path, cap: float, timeout: float = 420) -> JobTimes:
    """Poll the job's logs and state: first training step, the injected crash, the end of the job."""
    needles: Dict[bytes, Optional[float]] = {FIRST_STEP: None, CRASH: None, RANKS_UP: None}
    seen: Dict[Path, int] = {}
    last_state_poll = 0.0
    while True:
        now = time.time()
        _scan(root, seen, needles)
        jt.first_step = jt.first_step or needles[FIRST_STEP]
        jt.crash = jt.crash or needles[CRASH]
        jt.ranks_up = jt.ranks_up or needles[RANKS_UP]
        if now - last_state_poll >= (0.25 if jt.crash or jt.started is None else 1.0):
            last_state_poll = now
            if _ended(jt, now):
                _scan(root, seen, needles)
                jt.first_step = jt.first_step or needles[FIRST_STEP]
                jt.crash = jt.crash or needles[CRASH]
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


def run_danlu_job(
    ses: Session,
    nccl_like: bool,
    cap: float,
    job_args: Optional[Dict[str, object]] = None,
    checkout: Optional[Path] = None,
) -> JobTimes:
    """danlu's job; with `checkout`, submitted by the danlu of that checkout (another commit's)."""
    env = ses.private_env("crash-danlu")
    overrides = ["experiment=tiny_dpo", "cluster=testcluster", "resources.nodes=2", "resources.gpus_per_node=2"]
    overrides += [f"args.{k}={v}" for k, v in (job_args or CRASH_ARGS).items()]
    if nccl_like:
        overrides.append(f"program={BENCH / 'hang_on_peer_loss.py'}")
    jt = JobTimes("danlu", time.time())
    command = [str(VENV_BIN / "python"), "-m", "launcher.cli"] if checkout else [DANLU]
    done = sh([*command, "submit", *overrides, "--json"], env=env, cwd=checkout or REPO)
    jt.cli = time.time() - jt.submitted
    out = json.loads(done.stdout)
    jt.job_id = out["runs"][0]["job_id"]
    ses.submitted.append(jt.job_id)
    root = Path(env["DANLU_RUNS_DIR"]) / out["sweep"]
    return watch_job(jt, root, cap)


def run_handwritten_job(
    ses: Session, nccl_like: bool, cap: float, job_args: Optional[Dict[str, object]] = None
) -> JobTimes:
    d = ses.scratch("crash-hand")
    program = str(BENCH / "hang_on_peer_loss.py") if nccl_like else "train.py"
    args = " ".join(f"--{k}={v}" for k, v in (job_args or CRASH_ARGS).items()) + f" --output_dir={d / 'output'}"
    script = d / "job.sbatch"
    script.write_text(handwritten_script(d, program, args))
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    jt = JobTimes("hand-written", time.time())
    jt.job_id = sh([ses.sbatch, "--parsable", str(script)], env=env).stdout.strip().split(";")[0]
    jt.cli = time.time() - jt.submitted
    ses.submitted.append(jt.job_id)
    return watch_job(jt, d, cap)


def run_job(
    ses: Session, tool: str, nccl_like: bool, cap: float, job_args: Optional[Dict[str, object]] = None
) -> JobTimes:
    """The job submitted by `tool` ('danlu' or 'hand-written') and watched to its end (or the cap after a crash)."""
    run = run_danlu_job if tool == "danlu" else run_handwritten_job
    return run(ses, nccl_like, cap, job_args)
