"""The fault matrix: every launch mode x every fault the job side must survive or report, each case on 2 nodes x
2 ranks of the test cluster, side by side (Slurm runs them as its GPUs allow). The run writes its outcome table to
tests/fault-matrix.md (committed from one full run), then asserts each case's expectation:

  time limit -> COMPLETED after a requeue, the checkpoint taken at the signal, at most one interval of steps lost;
                every rank of both nodes got the signal itself, every rank of the next start resumed from the
                signal's checkpoint, and task 0 alone asked for the requeue, once every task had stopped
  scancel    -> CANCELLED, the checkpoint taken at the signal
  raise      -> FAILED within 10 s of the exception on every node, the reason names it
  hang       -> FAILED within 30 s of the hang (launch.hang_timeout_s=15), the reason says so
  preemption -> COMPLETED after Slurm's requeue, the checkpoint taken at the signal on every rank, every rank
                resumed from it
  dead node  -> (node2's slurmd and the job's processes there SIGKILLed) resumes from its last periodic checkpoint
                to COMPLETED, at most one interval lost
and after every case no process of the job is left on any node (the process table); with Lightning, its own
SLURM auto-requeue never acted and nothing (hpc_ckpt_*, lightning_logs) was written where the user did not ask.

All of it runs alone, after the other tests (disruptive: tests/run.sh): the first four faults hold the cluster's
GPUs for minutes (other tests' jobs timed out queueing behind them), preemption and a dead node disturb every job
of the cluster; the last two run with their four modes side by side, on the same four runs one after the other
(a start preempted, the next start past its next checkpoint when the node dies). Each test rewrites its own rows
of the table and keeps the others.
"""

from __future__ import annotations

import bisect
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

import pytest
from danlu_helpers import danlu, danlu_env, status_json, submit_json  # noqa: F401
from slurm_helpers import node_processes

if TYPE_CHECKING:
    from launcher.layout import RestartLayout

pytestmark = pytest.mark.slurm

TABLE = Path(__file__).with_name("fault-matrix.md")
LIGHTNING_WORKDIR = Path(__file__).resolve().parent.parent / "examples" / "tiny_lightning"
# a LightningCLI program shaped like upstream's: no callback of ours, `ckpt_path: null`, folders fixed in its YAML
UPSTREAM_WORKDIR = Path(__file__).resolve().parent / "programs" / "lightning_upstream"
SHAPE = ["cluster=testcluster", "resources.nodes=2"]
# A 2-minute limit, the warning 20 s before it: a start of a 2x2 job needs 15-50 s before its first step (four
# ranks importing torch on this 2-core machine), so 30-55 steps of 1.5 s fit in one start and 64 take two (three
# when the machine is busy). With a 1-minute limit a start trained 1-20 steps: three to six starts.
TL_STEPS = 64
MODES = {
    "accelerate": ["experiment=tiny_dpo", "launch=accelerate"],
    "torchrun": ["experiment=tiny_ibq", "launch=torchrun"],
    "lightning": ["experiment=tiny_lightning", "args.trainer.devices=2", "args.trainer.num_nodes=2"],
    "python": ["experiment=tiny_dpo", "launch=python"],
    "lightning-upstream": [
        "experiment=ibq",
        f"workdir={UPSTREAM_WORKDIR}",
        "resources=default",
        "env=none",
        f"launch.python={sys.executable}",
        "+args.model.init_args.print_steps=true",
        "+args.trainer.enable_progress_bar=false",
    ],
}
PROGRAMS = {  # the program each mode runs, as the table names it
    "accelerate": "examples/tiny_dpo",
    "torchrun": "examples/tiny_ibq",
    "lightning": "examples/tiny_lightning",
    "python": "examples/tiny_dpo",
    "lightning-upstream": "tests/programs/lightning_upstream",
}
# the faults a mode meets (all by default): the upstream-shaped program has no crash or hang of its own to inject
MODE_FAULTS = {"lightning-upstream": ("time limit", "preemption", "dead node")}
# the first four faults: every mode with 2 GPUs per node; the test cluster's 8 GPUs then let Slurm run two cases
# at a time, which is what this 2-core machine trains at a useful speed (four at once made a crash take 12-21 s to
# end the job, and time-limit starts overran their grace)
ON_GPUS = {m: v + ["resources.gpus_per_node=2"] for m, v in MODES.items()}
# side by side, all four at once (preemption, dead node): lightning/python run their 2 ranks per node as 2 tasks
# without GPUs, so that the four jobs fit node1-2 together (accelerate/torchrun start one rank per GPU)
NO_GPU_2_TASKS = ["resources.gpus_per_node=0", "launch.tasks_per_node=2"]
TOGETHER = {
    m: v
    + (
        NO_GPU_2_TASKS + (["resources.cpus_per_task=2"] if m == "lightning-upstream" else [])
        if m in ("lightning", "python", "lightning-upstream")
        else ["resources.gpus_per_node=2"]
    )
    for m, v in MODES.items()
}
INTERVAL = 10  # checkpoint every 10 steps (the tiny programs' checkpointing_steps; tiny_lightning validates so)


def _args(mode: str, **values: object) -> List[str]:
    """The programs' own option names for the same knobs."""
    if mode == "lightning-upstream":  # its model's knobs; it checkpoints every INTERVAL steps (its ModelCheckpoint)
        names = {"steps": "+args.trainer.max_steps", "sleep": "+args.model.init_args.step_seconds"}
        extra = [f"+args.trainer.callbacks.init_args.every_n_train_steps={INTERVAL}"]
    elif mode == "lightning":
        names = {
            "steps": "args.trainer.max_steps",
            "sleep": "args.model.sleep_per_step",
            "crash_at": "args.model.crash_at_step",
            "crash_rank": "args.model.crash_rank",
            "hang_at": "args.model.hang_at_step",
            "hang_rank": "args.model.hang_rank",
        }
        extra = []
    else:
        names = {
            "steps": "args.max_train_steps",
            "sleep": "args.sleep_per_step",
            "crash_at": "args.crash_at_step",
            "crash_rank": "args.crash_rank",
            "hang_at": "args.hang_at_step",
            "hang_rank": "args.hang_rank",
        }
        extra = [f"args.checkpointing_steps={INTERVAL}"] + (["+args.pretrain_steps=20"] if mode != "torchrun" else [])
    return [f"{names[k]}={v}" for k, v in values.items()] + extra


FAULTS = {
    "time limit": lambda m: (
        ["resources.time=2", "requeue.grace_s=20", "requeue.max_requeues=6"] + _args(m, steps=TL_STEPS, sleep=1.5)
    ),
    "scancel": lambda m: _args(m, steps=300, sleep=1),
    "raise": lambda m: _args(m, steps=30, sleep=0.5, crash_at=4, crash_rank=3),
    "hang": lambda m: ["launch.hang_timeout_s=15"] + _args(m, steps=30, sleep=0.5, hang_at=4, hang_rank=3),
}
DISRUPTIVE_STEPS = 80
# the same four runs meet both: preempted past the first checkpoint (step 10), resumed, past the next checkpoint
# when node2 dies; 80 steps leave room for all four to get there before the fastest is done
DISRUPTIVE = {
    "preemption": lambda m: ["requeue.max_requeues=4"] + _args(m, steps=DISRUPTIVE_STEPS, sleep=0.5),
}
ORDER = ["time limit", "preemption", "scancel", "raise", "hang", "dead node"]


@dataclass
class Case:
    mode: str
    fault: str
    name: str = ""
    run: str = ""
    submitted: float = 0.0
    first: int = 0  # the starts of the run this fault is read from: restarts[first:last]
    last: Optional[int] = None
    fault_at: Optional[float] = None  # when the fault was made (preemption, dead node)
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


def _agent_end(restart: RestartLayout) -> Optional[float]:
    """When the last agent of this restart logged its exit code (its lines carry milliseconds)."""
    ends = []
    for path in restart.agent_logs().values():
        for line in path.read_text(errors="replace").splitlines():
            m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3}) .*\] exit code ", line)
            if m:
                ends.append(time.mktime(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + int(m.group(2)) / 1000)
    return max(ends) if ends else None


def _steps(text: str) -> List[int]:
    return [int(s) for s in re.findall(r"^step=(\d+) .*\brank=0\b", text, re.M)]


def _modes(fault: str) -> List[str]:
    """The modes that meet `fault` (DANLU_FM_MODES: a rerun of some modes only)."""
    only = [m for m in os.environ.get("DANLU_FM_MODES", "").split(",") if m]
    assert all(m in MODES for m in only), f"DANLU_FM_MODES: {only} not in {list(MODES)}"
    return [m for m in MODES if fault in MODE_FAULTS.get(m, ORDER) and (not only or m in only)]


def _restarts(runs_dir: Path, name: str) -> List[RestartLayout]:
    """Every start of the run in order: the restarts of attempt 1, then of a rerun's attempt 2, ..."""
    from launcher.layout import SweepLayout

    run = SweepLayout(runs_dir / name).run(0)
    out: List[RestartLayout] = []
    for n in range(1, 10):
        if not run.attempt(n).root.exists():
            break
        out.extend(run.attempt(n).restarts())
    return out


def _check(case: Case, runs_dir: Path) -> None:
    every = _restarts(runs_dir, case.name)
    restarts = every[case.first : case.last]
    item = case.item
    state, reason = str(item.get("state")), str(item.get("reason") or "")
    starts = max(0, len(restarts) - 1)
    reruns = case.row.get("reruns")
    case.row = {
        "state": state,
        "restarts": str(starts) + (f" ({reruns} by rerun)" if reruns else ""),
        "lost": "-",
        "seconds": "-",
        "signal checkpoint": "-",
        "reason": reason or "-",
    }
    rank0 = [r.rank_log(0).read_text(errors="replace") if r.rank_log(0).exists() else "" for r in restarts]
    want = {"scancel": "CANCELLED", "raise": "FAILED", "hang": "FAILED"}.get(case.fault, "COMPLETED")
    if state != want:
        case.problems.append(f"state {state}, expected {want} ({reason})")
    saved = None
    if case.fault in ("time limit", "scancel", "preemption"):
        saved = re.search(r"received signal SIG\w+ at step=(\d+); checkpoint saved", rank0[0] if rank0 else "")
        case.row["signal checkpoint"] = f"step {saved.group(1)}" if saved else "none"
        if not saved:
            case.problems.append("no checkpoint taken at the signal")
        # every rank of both nodes got the checkpoint signal itself (torch elastic forwards no SIGUSR1)
        first = [restarts[0].rank_log(k) for k in range(4)] if restarts else []
        deaf = [
            k
            for k, f in enumerate(first)
            if not (
                f.exists()
                and re.search(r"^(?:danlu: )?signal SIG\w+ reached rank=%d" % k, f.read_text(errors="replace"), re.M)
            )
        ]
        if deaf:
            case.problems.append(f"rank(s) {deaf} never got the signal")
    if case.fault in ("time limit", "preemption") and saved and len(restarts) > 1:
        # the next start resumes on every rank from the checkpoint taken at the signal: no step lost
        step = saved.group(1)
        late = [
            k
            for k in range(4)
            if not (
                restarts[1].rank_log(k).exists()
                and re.search(
                    r"^(?:danlu: )?resumed from checkpoint step=%s rank=%d" % (step, k),
                    restarts[1].rank_log(k).read_text(errors="replace"),
                    re.M,
                )
            )
        ]
        if late:
            case.problems.append(f"rank(s) {late} of start 2 did not resume from step {step}")
        agent0 = next(iter(a for t, a in sorted(restarts[0].agent_logs().items()) if t in ("node0", "rank0")), None)
        said = agent0.read_text(errors="replace") if agent0 is not None else ""
        if case.fault == "time limit" and not re.search(
            r"^(\d+) of \1 tasks? stopped for the requeue$\n"
            r"^requeue of job \d+: ok$",
            said,
            re.M,
        ):
            case.problems.append("task 0 did not requeue once every task had stopped")
        if case.fault == "time limit":
            others = [
                t
                for t, a in restarts[0].agent_logs().items()
                if a != agent0 and "requeue of job" in a.read_text(errors="replace")
            ]
            if others:
                case.problems.append(f"{others} asked for a requeue too (only task 0 may)")
    if case.mode.startswith("lightning") and restarts:
        # danlu owns the requeue: Lightning's SLURM auto-requeue never acted, wrote nothing into the output dir
        # (hpc_ckpt_*) nor the program's working directory
        text = "\n".join(
            r.rank_log(k).read_text(errors="replace") for r in every for k in range(4) if r.rank_log(k).exists()
        )
        if "Handling auto-requeue signal" in text or "Requeued SLURM job" in text:
            case.problems.append("Lightning's auto-requeue acted")
        from launcher.layout import SweepLayout

        output = SweepLayout(runs_dir / case.name).run(0).output_dir
        workdir = UPSTREAM_WORKDIR if case.mode == "lightning-upstream" else LIGHTNING_WORKDIR
        strays = (
            list(output.rglob("hpc_ckpt_*"))
            + list(workdir.glob("hpc_ckpt_*"))
            + list(workdir.glob("lightning_logs"))
            + [p for p in (workdir.parent / "ckpt", workdir.parent / "logs") if case.mode != "lightning" and p.exists()]
        )
        if strays:
            case.problems.append(f"Lightning wrote {strays[0]}")
        # the program's own last checkpoint: where the example puts it, or below the run's own folders (the
        # upstream program's `../ckpt/tiny_ibq` moved below its output dir)
        last = Path("ckpt", "tiny_ibq") if case.mode == "lightning-upstream" else Path("checkpoints")
        if case.fault in ("time limit", "preemption") and not (output / last / "last.ckpt").exists():
            case.problems.append(f"no {last}/last.ckpt")
    if case.fault in ("time limit", "preemption", "dead node"):
        steps = TL_STEPS if case.fault == "time limit" else DISRUPTIVE_STEPS
        if case.fault_at is None:
            case.row["seconds"] = f"{(case.ended or time.time()) - case.submitted:.0f} (submit to end)"
        elif len(restarts) > 1:  # from the fault to the first line of the start that resumed
            resumed_at = _line_time(restarts[1].rank_log(0), "resumed from checkpoint")
            if resumed_at is not None:
                what = {"dead node": "node death"}.get(case.fault, case.fault)
                case.row["seconds"] = f"{resumed_at - case.fault_at:.0f} ({what} to resumed)"
        lost = 0
        for k in range(len(restarts) - 1):
            done = _steps(rank0[k])
            resumed = re.search(r"resumed from checkpoint step=(\d+)", rank0[k + 1])
            if done and resumed:
                lost = max(lost, done[-1] - int(resumed.group(1)))
            elif done:
                case.problems.append(f"start {k + 2} did not resume")
        case.row["lost"] = str(lost)
        if lost > INTERVAL:
            case.problems.append(f"{lost} steps lost (> one interval of {INTERVAL})")
        done_text = "\n".join(r.rank_log(0).read_text(errors="replace") for r in every if r.rank_log(0).exists())
        if f"done steps={steps}" not in done_text and f"`max_steps={steps}` reached" not in done_text:
            case.problems.append(f"never reached step {steps}")
        if starts < 1:
            case.problems.append("never started again")
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
            case.row["seconds"] = f"{end - start:.1f} ({what.split()[1]} to end)"
            if end - start > limit:
                case.problems.append(f"{end - start:.0f}s from the {what.split()[1]} to the end (> {limit}s)")
        need = "RuntimeError: injected crash at step 4 on rank 3" if case.fault == "raise" else "hung"
        if need not in reason:
            case.problems.append(f"reason {reason!r} does not say {need!r}")


HEAD = [
    "launch",
    "program",
    "fault",
    "state",
    "restarts",
    "steps lost",
    "seconds",
    "signal checkpoint",
    "reason",
    "ok",
    "run",
]


def _write_table(cases: List[Case]) -> None:
    """This test's rows, new; the other tests' rows as they were (one full run writes them all)."""
    rows: Dict[tuple, List[str]] = {}
    if TABLE.exists():
        for line in TABLE.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| ") and len(cells) == len(HEAD) - 1 and cells[1] in ORDER:
                cells.insert(1, PROGRAMS.get(cells[0], "-"))  # a row written before the program column
            if line.startswith("| ") and len(cells) == len(HEAD) and cells[2] in ORDER:
                rows[(cells[0], cells[2])] = cells
    for c in cases:
        r = c.row
        rows[(c.mode, c.fault)] = [
            c.mode,
            PROGRAMS[c.mode],
            c.fault,
            r.get("state", "-"),
            r.get("restarts", "-"),
            r.get("lost", "-"),
            r.get("seconds", "-"),
            r.get("signal checkpoint", "-"),
            r.get("reason", "-").replace("|", "/"),
            "yes" if not c.problems else "NO: " + "; ".join(c.problems).replace("|", "/"),
            time.strftime("%Y-%m-%d"),
        ]
    modes = list(MODES)
    order = sorted(rows, key=lambda k: (ORDER.index(k[1]), modes.index(k[0]) if k[0] in modes else 99))
    lines = [
        "# Fault matrix",
        "",
        "Written by `tests/test_fault_matrix.py` on the test cluster, each case on 2 nodes x 2 ranks; `run` is "
        "the day of the run that wrote the row. The matrix runs after the other tests. Time limit, scancel, raise "
        "and hang run side by side as the cluster's 8 GPUs allow (two at a time), every mode with 2 GPUs per "
        "node. Preemption and dead node run the four modes at once, on the same four runs one fault after the other "
        "(preempted, resumed, past the next checkpoint, then node2 dies); lightning and python then run their 2 "
        "ranks per node as 2 tasks without GPUs. `program` is what ran: the examples were written for danlu; "
        "`tests/programs/lightning_upstream` is a LightningCLI program shaped like upstream's that knows nothing "
        "of danlu (its progress kept by danlu's extra --config and callback).",
        "",
        "| " + " | ".join(HEAD) + " |",
        "|" + "---|" * len(HEAD),
    ]
    lines += ["| " + " | ".join(rows[k]) + " |" for k in order]
    TABLE.write_text("\n".join(lines) + "\n")


def _job_processes(markers: List[str]) -> List[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if any(m in ln for m in markers) and "ps -eo" not in ln]


TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED")


def _submit(
    cases: List[Case], modes: Dict[str, List[str]], faults: Dict[str, Callable[[str], List[str]]], env: Dict[str, str]
) -> None:
    for c in cases:
        c.name = f"fm-{c.mode}-{c.fault.replace(' ', '')}"
        c.submitted = time.time()
        out = submit_json(*SHAPE, *modes[c.mode], *faults[c.fault](c.mode), "--name", c.name, env=env)
        c.run = out["runs"][0]["run"]


def _drive(
    cases: List[Case],
    env: Dict[str, str],
    timeout: float,
    act: Optional[Callable[[Case, Dict[str, object]], None]] = None,
    ended: Callable[[Case, Dict[str, object]], bool] = lambda c, item: item["state"] in TERMINAL,
) -> None:
    """Poll the cases' states until each has ended (or the time is up); `act` sees every running case's item."""
    deadline = time.time() + timeout
    pending = {c.name: c for c in cases if not c.item or not ended(c, c.item)}
    while pending and time.time() < deadline:
        for item in status_json(*pending, env=env):
            c = pending[item["run"].split("/")[0]]
            if act is not None and item["state"] == "RUNNING":
                act(c, item)
            if ended(c, item):
                c.item = item
                c.ended = time.time()
                del pending[c.name]
        time.sleep(3)
    for c in cases:
        if c.name in pending:
            c.problems.append("did not end in time")
            c.item = {"state": "RUNNING"}


def _finish(cases: List[Case], runs_dir: Path) -> None:
    """Every case checked, no process of any case left on any node, the table written; then the verdict."""
    from launcher.layout import SweepLayout

    markers = sorted({str(SweepLayout(runs_dir / c.name).run(0).output_dir) for c in cases})
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


def _rank0_step(runs_dir: Path, c: Case) -> int:
    restarts = _restarts(runs_dir, c.name)
    log = restarts[-1].rank_log(0) if restarts else None
    steps = _steps(log.read_text(errors="replace")) if log is not None and log.exists() else []
    return steps[-1] if steps else 0


def _wait_all_past(
    cases: List[Case],
    env: Dict[str, str],
    runs_dir: Path,
    step: Callable[[Case], int],
    timeout: float,
    restart: int = 0,
) -> None:
    """Until every case runs its start number `restart` (or a later one) and its rank 0 is past `step(case)`."""
    deadline = time.time() + timeout

    def there(c: Case) -> bool:
        return len(_restarts(runs_dir, c.name)) > restart and _rank0_step(runs_dir, c) > step(c)

    while time.time() < deadline:
        items = {i["run"].split("/")[0]: i for i in status_json(*(c.name for c in cases), env=env)}
        if all(items[c.name]["state"] == "RUNNING" and there(c) for c in cases):
            return
        ended = [f"{n}: {i['state']}" for n, i in items.items() if i["state"] in TERMINAL and i["state"] != "PREEMPTED"]
        assert not ended, f"ended before the fault: {ended}"
        time.sleep(1)
    raise AssertionError(
        f"not all of start {restart} past their step within {timeout}s: "
        f"{ {c.name: (len(_restarts(runs_dir, c.name)), _rank0_step(runs_dir, c)) for c in cases} }"
    )


@pytest.mark.disruptive  # holds the test cluster's 8 GPUs for minutes: the other tests' jobs would queue behind it
def test_fault_matrix(slurm_cluster, danlu_env):
    from launcher.layout import SweepLayout

    runs_dir = Path(danlu_env["DANLU_RUNS_DIR"])
    only = [f for f in os.environ.get("DANLU_FM_FAULTS", "").split(",") if f]  # a rerun of some faults only
    assert all(f in FAULTS for f in only), f"DANLU_FM_FAULTS: {only} not in {list(FAULTS)}"
    cases = [Case(m, f) for f in FAULTS for m in _modes(f) if not only or f in only]  # the time limit first: longest
    _submit(cases, ON_GPUS, FAULTS, danlu_env)

    def cancel_at_step_3(c: Case, item: Dict[str, object]) -> None:
        if c.fault == "scancel" and c.cancelled_at is None:
            r = SweepLayout(runs_dir / c.name).run(0).attempt(1).restart(0).rank_log(0)
            if r.exists() and re.search(r"^step=3 ", r.read_text(errors="replace"), re.M):
                c.cancelled_at = time.time()
                assert danlu("cancel", c.run, env=danlu_env).returncode == 0

    _drive(cases, danlu_env, 1500, cancel_at_step_3)
    _finish(cases, runs_dir)


def _kill_node(slurm_cluster, node: str, job_ids: List[str]) -> None:
    """The node dies: its slurmd and everything the jobs run there (step daemons and tasks)."""
    slurm_cluster.node("kill", node)
    victims = node_processes(node, job_ids, with_step_daemons=True)
    assert victims, f"no processes of jobs {job_ids} on {node}"
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _past_next_checkpoint(runs_dir: Path, c: Case) -> int:
    """The step rank 0 of the run's latest start must pass for a checkpoint of that start to exist."""
    restarts = _restarts(runs_dir, c.name)
    log = restarts[-1].rank_log(0) if restarts else None
    text = log.read_text(errors="replace") if log is not None and log.exists() else ""
    resumed = re.search(r"^(?:danlu: )?resumed from checkpoint step=(\d+)", text, re.M)
    return (int(resumed.group(1)) // INTERVAL + 1) * INTERVAL + 1 if resumed else 10**6


def _never_final_while_held(runs: List[Case], env: Dict[str, str], tmp_path: Path) -> None:
    """Through the requeue window of a preemption no run is ever final (launcher/state/machine.py): not in danlu's
    view, nor in one made without squeue's answer (a squeue that fails: sacct's PREEMPTED record is all there is),
    where every run shows PREEMPTED, not final, and `danlu rerun` refuses to start a second copy."""
    shim = tmp_path / "no-squeue"
    shim.mkdir()
    (shim / "squeue").write_text(
        "#!/bin/bash\necho 'squeue: error: Socket timed out on send/recv operation' >&2\nexit 1\n"
    )
    (shim / "squeue").chmod(0o755)
    blind = dict(env, PATH=f"{shim}:{os.environ['PATH']}")
    names = [c.name for c in runs]
    held: set = set()
    deadline = time.time() + 90
    while held != set(names) and time.time() < deadline:
        for item in status_json(*names, env=blind):
            assert not item["final"], item
            name = item["run"].split("/")[0]
            if item["state"] == "PREEMPTED" and name not in held:
                held.add(name)
                refused = danlu("rerun", name, env=blind)
                assert refused.returncode == 2 and "Slurm still holds job" in refused.stderr, refused.stderr
        for item in status_json(*names, env=env):
            assert not item["final"], item
        time.sleep(1)
    assert held == set(names), f"seen PREEMPTED (not final) without squeue: {sorted(held)} of {names}"


@pytest.mark.disruptive  # preempts every job on node1-2, then kills node2: run alone (tests/run.sh)
def test_fault_matrix_preemption_then_dead_node(slurm_cluster, danlu_env, tmp_path):
    """Four runs (one per mode, side by side) meet both faults, one after the other. First a job of the
    higher-tier partition takes node1-2 whole: Slurm preempts (requeues) all four; each gets SIGTERM, checkpoints,
    and starts again from that checkpoint when the urgent job is done. Once every run is past its next periodic
    checkpoint, node2's slurmd and every process of the four jobs there are SIGKILLed: Slurm notices within
    SlurmdTimeout and requeues the jobs (NODE_FAIL with --requeue); where it ends one instead, `danlu rerun` is the
    documented path. Either way each run resumes from that periodic checkpoint to COMPLETED. The preemption row
    reads the first two starts, the dead-node row the starts from the second on. Through the preemption's requeue
    window no run is shown final, and `danlu rerun` refuses to start a second copy of one (issue 15)."""
    runs_dir = Path(danlu_env["DANLU_RUNS_DIR"])
    runs = [Case(m, "preemption") for m in _modes("preemption")]
    _submit(runs, TOGETHER, DISRUPTIVE, danlu_env)
    _wait_all_past(runs, danlu_env, runs_dir, lambda c: INTERVAL + 1, 240)
    preempted = time.time()
    urgent = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-p",
            "urgent-4090",
            "-N",
            "2",
            "-w",
            "node[1-2]",
            "--exclusive",
            "-t",
            "2",
            "-o",
            "/dev/null",
            "--wrap",
            "sleep 10",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        _never_final_while_held(runs, danlu_env, tmp_path)
        # every run preempted and started again (a restart), past the checkpoint after the one it resumed from
        _wait_all_past(runs, danlu_env, runs_dir, lambda c: _past_next_checkpoint(runs_dir, c), 360, restart=1)
    finally:
        subprocess.run(["scancel", urgent])
    dead = [Case(c.mode, "dead node", name=c.name, run=c.run, submitted=c.submitted, first=1) for c in runs]
    for c in runs:
        c.fault_at, c.last = preempted, 2
    jobs = [str(i["job_id"]) for i in status_json(*(c.name for c in runs), env=danlu_env)]
    killed = time.time()
    _kill_node(slurm_cluster, "node2", jobs)
    for c in dead:
        c.fault_at = killed
    try:  # the dead node stops every run: requeued by Slurm (a restart) or ended
        _drive(dead, danlu_env, 180, ended=lambda c, item: item["state"] != "RUNNING" or int(item["restarts"]) > 1)
        # slurmctld holds the RPCs it could not deliver to the dead node (srun's stop of the step) and sends them
        # when it is back: they hit the requeued job's next start there, which danlu then requeues once more
        # (launcher/job/requeue.stopped_from_outside; tests/test_signals.py shows it alone)
    finally:
        slurm_cluster.node("start", "node2")
    for c in dead:
        if c.item.get("state") == "COMPLETED":
            c.problems.append("COMPLETED although a node died under it")
    # a run the dead node ended (not requeued), or whose requeued start could not create its step on the node that
    # just came back (seen once on 22.05: "Unable to create step ... Invalid generic resource (gres)
    # specification"), is rerun — the documented path — and resumes from its checkpoint
    for rerun_round in range(3):
        for c in dead:
            if c.item.get("state") in TERMINAL and c.item.get("state") != "COMPLETED":
                rerun = danlu("rerun", c.name, env=danlu_env)
                assert rerun.returncode == 0, rerun.stderr
                c.row["reruns"] = str(rerun_round + 1)
                c.item, c.ended = {}, 0.0
            elif rerun_round == 0:
                c.item, c.ended = {}, 0.0
        _drive(dead, danlu_env, 420, ended=lambda c, item: item["state"] in TERMINAL and item["state"] != "PREEMPTED")
        if all(c.item.get("state") == "COMPLETED" for c in dead):
            break
    for p, d in zip(runs, dead, strict=False):
        p.item, p.ended = d.item, d.ended
    _finish(runs + dead, runs_dir)
