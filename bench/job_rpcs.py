#!/usr/bin/env python3
"""How much one 2-node job loads slurmctld: its RPCs from start to end, counted by `sdiag`, for danlu's job side
next to the hand-written script of bench/handwritten.sbatch (and, with --at, danlu at an older commit).

    python bench/job_rpcs.py [--at COMMIT ...] [--reps N]

Each job (tiny_dpo, 2 nodes x 2 ranks through accelerate, a few steps) is submitted held; then the controller's
statistics are reset (`sdiag -r`), the job released, and its end awaited through `sacct` (slurmdbd, not
slurmctld) and its own files, so that nothing of the bench's own reaches the controller between the two
`sdiag` readings but the release itself (one REQUEST_UPDATE_JOB, taken off). Needs a quiet test cluster
(tests/cluster/up.sh): the script refuses to measure while other jobs are queued.

RPC types are grouped as
  job's own   what the job's scripts and agents ask (job/partition/node info, requeue, updates, config, ...)
  srun        what srun needs for a step (step create/complete, allocation lookup, step cancel)
  slurmd      the nodes' own messages about the job (batch script complete, epilog, registration)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script too: the package's state names
from bench.paths import handwritten_script  # noqa: E402
from launcher.state.names import ACTIVE  # noqa: E402

VENV_BIN = REPO / ".venv" / "bin"
SRUN_RPCS = {
    "REQUEST_JOB_STEP_CREATE",
    "REQUEST_STEP_COMPLETE",
    "REQUEST_HET_JOB_ALLOC_INFO",
    "REQUEST_JOB_ALLOCATION_INFO",
    "REQUEST_CANCEL_JOB_STEP",
    "REQUEST_STEP_LAYOUT",
    "REQUEST_JOB_READY",
    "REQUEST_JOB_SBCAST_CRED",
}
SLURMD_RPCS = {
    "REQUEST_COMPLETE_BATCH_SCRIPT",
    "MESSAGE_EPILOG_COMPLETE",
    "MESSAGE_NODE_REGISTRATION_STATUS",
    "REQUEST_COMPLETE_PROLOG",
    "REQUEST_COMPLETE_JOB_ALLOCATION",
}
JOB_ARGS = {"max_train_steps": 6, "sleep_per_step": 0.2, "checkpointing_steps": 3}
OVERRIDES = [
    "experiment=tiny_dpo",
    "cluster=testcluster",
    "resources.nodes=2",
    "resources.gpus_per_node=2",
    "+args.pretrain_steps=20",
    "resources.extra_sbatch=[--hold]",
] + [f"args.{k}={v}" for k, v in JOB_ARGS.items()]
_TMP: List[Path] = []


def tmp() -> Path:
    """This run's scratch folder, made when first needed (importing this module makes none)."""
    if not _TMP:
        _TMP.append(Path(tempfile.mkdtemp(prefix="danlu-rpcs-", dir="/var/tmp" if Path("/var/tmp").is_dir() else None)))
    return _TMP[0]


def sh(cmd: List[str], env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(cwd) if cwd else None, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def rpc_counts() -> Dict[str, int]:
    """slurmctld's RPC counts by message type, as sdiag has them now."""
    text = sh(["sdiag"])
    part = text.split("Remote Procedure Call statistics by message type", 1)[1].split("Remote Procedure Call", 1)[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s*(\w+)\s+\(\s*\d+\)\s+count:(\d+)", part, re.M)}


def accounting_state(job_id: str) -> str:
    """The job's state from slurmdbd (sacct asks slurmdbd, never slurmctld)."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True
    ).stdout.split()
    return out[0] if out else ""


def measure(job_id: str, done_file: Optional[Path] = None, timeout: float = 600) -> Dict[str, int]:
    """Reset the statistics, release the held job, wait for its end, and return the RPCs it caused."""
    sh(["sdiag", "-r"])
    before = rpc_counts()
    sh(["scontrol", "release", job_id])
    deadline = time.time() + timeout
    while True:
        state = accounting_state(job_id)
        if state and state not in ACTIVE and (done_file is None or done_file.exists()):
            break
        if time.time() > deadline:
            subprocess.run(["scancel", job_id])
            raise RuntimeError(f"job {job_id} did not end in {timeout} s (state {state})")
        time.sleep(2)
    time.sleep(5)  # the nodes' last messages (epilog complete) arrive after the accounting record
    after = rpc_counts()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    delta["REQUEST_UPDATE_JOB"] = delta.get("REQUEST_UPDATE_JOB", 0) - 1  # the release
    delta.pop("REQUEST_STATS_INFO", None)  # sdiag's own reading
    if state != "COMPLETED":
        raise RuntimeError(f"job {job_id} ended {state}")
    return {k: v for k, v in delta.items() if v > 0}


def danlu_job(src: Path, label: str) -> Dict[str, int]:
    root = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=tmp()))
    env = dict(
        os.environ,
        DANLU_HOME=str(root / "home"),
        DANLU_STORE=str(root / "home" / "store.sqlite"),
        DANLU_RUNS_DIR=str(root / "runs"),
        NO_COLOR="1",
        PYTHONPATH=str(src),
    )
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    out = json.loads(
        sh([str(VENV_BIN / "python"), "-m", "launcher.cli", "submit", *OVERRIDES, "--json"], env=env, cwd=src)
    )
    return measure(out["runs"][0]["job_id"])


def handwritten_job() -> Dict[str, int]:
    d = Path(tempfile.mkdtemp(prefix="hand-", dir=tmp()))
    args = " ".join(f"--{k}={v}" for k, v in JOB_ARGS.items()) + f" --pretrain_steps=20 --output_dir={d / 'out'}"
    (d / "job.sbatch").write_text(handwritten_script(d, "train.py", args))
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}", ACCELERATE_USE_CPU="true")
    job_id = sh(["sbatch", "--parsable", "--hold", str(d / "job.sbatch")], env=env).strip().split(";")[0]
    return measure(job_id)


def worktree(commit: str) -> Path:
    path = tmp() / f"at-{commit[:10]}"
    sh(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit])
    return path


def groups(delta: Dict[str, int]) -> Dict[str, int]:
    srun = sum(v for k, v in delta.items() if k in SRUN_RPCS)
    slurmd = sum(v for k, v in delta.items() if k in SLURMD_RPCS)
    own = sum(v for k, v in delta.items() if k not in SRUN_RPCS and k not in SLURMD_RPCS)
    return {"job's own": own, "srun": srun, "slurmd": slurmd, "total": own + srun + slurmd}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--at", nargs="*", default=[], help="older commits of danlu to measure too (git worktrees)")
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()
    if shutil.which("sdiag") is None:
        print("error: no sdiag on PATH\nhint: bash tests/cluster/up.sh", file=sys.stderr)
        return 2
    if sh(["squeue", "-h", "-o", "%i"]).split():
        print(
            "error: the cluster has queued jobs: the counts would include theirs\nhint: wait for them, or "
            "measure on a quiet test cluster",
            file=sys.stderr,
        )
        return 2
    tools = {"danlu (this checkout)": lambda: danlu_job(REPO, "head")}
    trees = []
    for commit in a.at:
        tree = worktree(commit)
        trees.append(tree)
        tools[f"danlu at {commit[:10]}"] = lambda t=tree, c=commit: danlu_job(t, c[:10])
    tools["hand-written sbatch"] = handwritten_job
    results: Dict[str, List[Dict[str, int]]] = {name: [] for name in tools}
    try:
        for rep in range(a.reps):
            for name, run in tools.items():  # alternating: A B C A B C
                delta = run()
                results[name].append(delta)
                print(f"rep {rep + 1} {name}: {groups(delta)} {dict(sorted(delta.items()))}", file=sys.stderr)
    finally:
        for tree in trees:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    version = sh(["sinfo", "--version"]).strip()
    print(
        f"# slurmctld RPCs of one 2-node x 2-rank job (tiny_dpo via accelerate, {JOB_ARGS['max_train_steps']} steps), "
        f"{version}, median of {a.reps}\n"
    )
    cols = ["job's own", "srun", "slurmd", "total"]
    print("| | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    base = None
    for name, deltas in results.items():
        med = {c: statistics.median(groups(d)[c] for d in deltas) for c in cols}
        base = base if base is not None else med
        print(f"| {name} | " + " | ".join(f"{med[c]:g}" for c in cols) + " |")
    print("\nby type (last rep):")
    for name, deltas in results.items():
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(deltas[-1].items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
