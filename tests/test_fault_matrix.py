"""The fault matrix: every launch mode x every fault the job side must survive or report, each case on 2 nodes x
2 ranks of the test cluster, side by side (Slurm runs them as its GPUs allow). The run writes its outcome table to
tests/fault-matrix.md (committed from one full run), then asserts each case's expectation:

  time limit -> COMPLETED after a requeue, the checkpoint taken at the signal, at most one interval of steps lost
  scancel    -> CANCELLED, the checkpoint taken at the signal
  raise      -> FAILED within 10 s of the exception on every node, the reason names it
  hang       -> FAILED within 30 s of the hang (launch.hang_timeout_s=15), the reason says so
and after every case no process of the job is left on any node (the process table).

Preemption and a killed slurmd are in tests/test_resilience.py (disruptive: they run alone).
"""

from __future__ import annotations

import bisect
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from danlu_helpers import danlu, danlu_env, status_json, submit_json  # noqa: F401

pytestmark = pytest.mark.slurm

TABLE = Path(__file__).with_name("fault-matrix.md")
SHAPE = ["cluster=testcluster", "resources.nodes=2", "resources.gpus_per_node=2"]
TL_STEPS = 45  # 15-32 steps fit in one start of a 1-minute job: two to four starts
# every mode on 2 GPUs per node: the test cluster's 8 GPUs then let Slurm run two cases at a time, which is what
# this 2-core machine can train at a useful speed (all 16 at once starve the time-limit cases of steps)
MODES = {
    "accelerate": ["experiment=tiny_dpo", "launch=accelerate"],
    "torchrun": ["experiment=tiny_ibq", "launch=torchrun"],
    "lightning": ["experiment=tiny_lightning", "args.trainer.devices=2", "args.trainer.num_nodes=2"],
    "python": ["experiment=tiny_dpo", "launch=python"],
}
INTERVAL = 10  # checkpoint every 10 steps (the tiny programs' checkpointing_steps; tiny_lightning validates so)


def _args(mode: str, **values: object) -> List[str]:
    """The programs' own option names for the same knobs."""
    if mode == "lightning":
        names = {"steps": "args.trainer.max_steps", "sleep": "args.model.sleep_per_step",
                 "crash_at": "args.model.crash_at_step", "crash_rank": "args.model.crash_rank",
                 "hang_at": "args.model.hang_at_step", "hang_rank": "args.model.hang_rank"}
        extra = []
    else:
        names = {"steps": "args.max_train_steps", "sleep": "args.sleep_per_step", "crash_at": "args.crash_at_step",
                 "crash_rank": "args.crash_rank", "hang_at": "args.hang_at_step", "hang_rank": "args.hang_rank"}
        extra = [f"args.checkpointing_steps={INTERVAL}"] + (["+args.pretrain_steps=20"] if mode != "torchrun" else [])
    return [f"{names[k]}={v}" for k, v in values.items()] + extra


FAULTS = {
    "time limit": lambda m: ["resources.time=1", "requeue.grace_s=20", "requeue.max_requeues=6"]
    + _args(m, steps=TL_STEPS, sleep=1),
    "scancel": lambda m: _args(m, steps=300, sleep=1),
    "raise": lambda m: _args(m, steps=30, sleep=0.5, crash_at=4, crash_rank=3),
    "hang": lambda m: ["launch.hang_timeout_s=15"] + _args(m, steps=30, sleep=0.5, hang_at=4, hang_rank=3),
}


@dataclass
class Case:
    mode: str
    fault: str
    name: str = ""
    run: str = ""
    submitted: float = 0.0
    cancelled_at: Optional[float] = None
    ended: float = 0.0
    item: Dict[str, object] = field(default_factory=dict)
    row: Dict[str, str] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)


def _line_time(log: Path, pattern: str) -> Optional[float]:
    """When the first line matching `pattern` was written (the log's time index, launcher/layout.time_index)."""
    from launcher.layout import time_index

    if not log.exists():
        return None
    data = log.read_bytes()
    m = re.search(pattern.encode(), data)
    if not m or not time_index(log).exists():
        return None
    entries = [ln.split() for ln in time_index(log).read_text().splitlines() if ln.strip()]
    offs = [int(e[0]) for e in entries]
    k = bisect.bisect_right(offs, m.start()) - 1
    return float(entries[k][1]) if k >= 0 else None


def _agent_end(restart) -> Optional[float]:  # type: ignore[no-untyped-def]
    """The last agent of this restart to log its exit code (second resolution)."""
    ends = []
    for path in restart.agent_logs().values():
        for line in path.read_text(errors="replace").splitlines():
            if "] exit code " in line:
                ends.append(time.mktime(time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S")))
    return max(ends) if ends else None


def _steps(text: str) -> List[int]:
    return [int(s) for s in re.findall(r"^step=(\d+) .*rank=0 ", text, re.M)]


def _check(case: Case, runs_dir: Path) -> None:
    from launcher.layout import SweepLayout

    layout = SweepLayout(runs_dir / case.name).run(0)
    restarts = layout.attempt(1).restarts()
    item = case.item
    state, reason = str(item.get("state")), str(item.get("reason") or "")
    case.row = {"state": state, "requeues": str(item.get("restarts", "")), "lost": "-", "seconds": "-",
                "signal checkpoint": "-", "reason": reason or "-"}
    rank0 = [r.rank_log(0).read_text(errors="replace") if r.rank_log(0).exists() else "" for r in restarts]
    want = {"time limit": "COMPLETED", "scancel": "CANCELLED", "raise": "FAILED", "hang": "FAILED"}[case.fault]
    if state != want:
        case.problems.append(f"state {state}, expected {want} ({reason})")
    if case.fault in ("time limit", "scancel"):
        saved = re.search(r"received signal SIG\w+ at step=(\d+); checkpoint saved", rank0[0] if rank0 else "")
        case.row["signal checkpoint"] = f"step {saved.group(1)}" if saved else "none"
        if not saved:
            case.problems.append("no checkpoint taken at the signal")
    if case.fault == "time limit":
        case.row["seconds"] = f"{(case.ended or time.time()) - case.submitted:.0f} (submit to end)"
        lost = 0
        for k in range(len(restarts) - 1):
            done = _steps(rank0[k])
            resumed = re.search(r"resumed from checkpoint step=(\d+)", rank0[k + 1])
            if done and resumed:
                lost = max(lost, done[-1] - int(resumed.group(1)))
            elif done:
                case.problems.append(f"restart {k + 1} did not resume")
        case.row["lost"] = str(lost)
        if lost > INTERVAL:
            case.problems.append(f"{lost} steps lost (> one interval of {INTERVAL})")
        if not restarts or f"done steps={TL_STEPS}" not in "\n".join(rank0):
            case.problems.append(f"never reached step {TL_STEPS}")
        if int(item.get("restarts") or 0) < 1:
            case.problems.append("never requeued")
    if case.fault == "scancel" and case.cancelled_at and restarts:
        end = _agent_end(restarts[-1])
        case.row["seconds"] = f"{end - case.cancelled_at:.0f} (cancel to end)" if end else "-"
    if case.fault in ("raise", "hang") and restarts:
        what = "injected crash" if case.fault == "raise" else "injected hang"
        logs = [restarts[-1].rank_log(3, stderr=True), restarts[-1].rank_log(3)]
        start = min((t for t in (_line_time(f, what) for f in logs) if t is not None), default=None)
        end = _agent_end(restarts[-1])
        limit = 10 if case.fault == "raise" else 30
        if start is None or end is None:
            case.problems.append(f"no time for the {what} ({start}) or the end ({end})")
        else:
            case.row["seconds"] = f"{end - start:.0f} ({what.split()[1]} to end)"
            if end - start > limit + 1:  # the agents' log lines have a resolution of one second
                case.problems.append(f"{end - start:.0f}s from the {what.split()[1]} to the end (> {limit}s)")
        need = "RuntimeError: injected crash at step 4 on rank 3" if case.fault == "raise" else "hung"
        if need not in reason:
            case.problems.append(f"reason {reason!r} does not say {need!r}")


def _write_table(cases: List[Case]) -> None:
    head = ["launch", "fault", "state", "requeues", "steps lost", "seconds", "signal checkpoint", "reason", "ok"]
    lines = ["# Fault matrix", "", "Written by `tests/test_fault_matrix.py` on the test cluster "
             f"({time.strftime('%Y-%m-%d')}); every case on 2 nodes x 2 ranks. Preemption and a killed slurmd: "
             "`tests/test_resilience.py`.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cases:
        r = c.row
        cells = [c.mode, c.fault, r.get("state", "-"), r.get("requeues", "-"), r.get("lost", "-"),
                 r.get("seconds", "-"), r.get("signal checkpoint", "-"), r.get("reason", "-").replace("|", "/"),
                 "yes" if not c.problems else "NO: " + "; ".join(c.problems).replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    TABLE.write_text("\n".join(lines) + "\n")


def _job_processes(markers: List[str]) -> List[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if any(m in ln for m in markers) and "ps -eo" not in ln]


def test_fault_matrix(slurm_cluster, danlu_env):
    from launcher.layout import SweepLayout

    runs_dir = Path(danlu_env["DANLU_RUNS_DIR"])
    cases = [Case(m, f) for f in FAULTS for m in MODES]
    for c in cases:
        c.name = f"fm-{c.mode}-{c.fault.replace(' ', '')}"
        c.submitted = time.time()
        out = submit_json(*MODES[c.mode], *SHAPE, *FAULTS[c.fault](c.mode), "--name", c.name, env=danlu_env)
        c.run = out["runs"][0]["run"]
    deadline = time.time() + 1200
    pending = {c.name: c for c in cases}
    while pending and time.time() < deadline:
        for item in status_json(*pending, env=danlu_env):
            c = pending[item["run"].split("/")[0]]
            if c.fault == "scancel" and c.cancelled_at is None and item["state"] == "RUNNING":
                r = SweepLayout(runs_dir / c.name).run(0).attempt(1).restart(0).rank_log(0)
                if r.exists() and re.search(r"^step=3 ", r.read_text(errors="replace"), re.M):
                    c.cancelled_at = time.time()
                    assert danlu("cancel", c.run, env=danlu_env).returncode == 0
            if item["state"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                c.item = item
                c.ended = time.time()
                del pending[c.name]
        time.sleep(3)
    for c in cases:
        if c.name in pending:
            c.problems.append("did not end in time")
            c.item = {"state": "RUNNING"}
    markers = [str(SweepLayout(runs_dir / c.name).run(0).output_dir) for c in cases]
    end = time.time() + 45  # an agent may still be collecting its logs after Slurm recorded the state
    while _job_processes(markers) and time.time() < end:
        time.sleep(1)
    left = _job_processes(markers)
    for c in cases:
        _check(c, runs_dir)
        mine = [ln for ln in left if str(SweepLayout(runs_dir / c.name).run(0).output_dir) in ln]
        if mine:
            c.problems.append(f"{len(mine)} process(es) left: {mine[0][:120]}")
    _write_table(cases)
    bad = [f"{c.mode}/{c.fault}: {'; '.join(c.problems)}" for c in cases if c.problems]
    assert not bad, "\n".join(bad) + f"\n(see {TABLE})"
