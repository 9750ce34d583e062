"""Real (CPU) runs of the reference workloads in examples/.

Every test launches the actual training script in subprocesses: single
process, `accelerate launch` with 2 processes (gloo), and 2 processes started
directly with torchrun-style env vars.  Nothing is mocked.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = ["tiny_dpo", "tiny_ibq"]

STEP_RE = re.compile(r"^step=(\d+) loss=(\S+) (.*) rank=(\d+) world_size=(\d+)$", re.M)
START_RE = re.compile(r"^rank=(\d+) world_size=(\d+) local_rank=(\d+) node=(\S+) pid=(\d+)$", re.M)
SIGNAL_RE = re.compile(r"^received signal (\w+) at step=(\d+); checkpoint saved; exiting for requeue$", re.M)

# Variables that would make a child think it is part of an outer job.
_LAUNCH_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "GROUP_RANK",
    "ROLE_RANK",
    "TORCHELASTIC_RUN_ID",
    "ACCELERATE_USE_CPU",
)


def script(workload):
    return str(REPO / "examples" / workload / "train.py")


def clean_env(**extra):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _LAUNCH_VARS and not k.startswith(("SLURM_", "ACCELERATE_", "TORCHELASTIC_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, timeout=600, env=None):  # seconds of work; over 240 s once under the whole suite's load
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or clean_env())


def train(workload, out, *args, timeout=600):
    return run([sys.executable, script(workload), "--output_dir", str(out), *map(str, args)], timeout=timeout)


def steps(stdout, rank=0):
    """{step: (loss, extra-fields dict, world_size)} for one rank."""
    res = {}
    for m in STEP_RE.finditer(stdout):
        if int(m.group(4)) == rank:
            fields = dict(kv.split("=", 1) for kv in m.group(3).split())
            res[int(m.group(1))] = (float(m.group(2)), fields, int(m.group(5)))
    return res


def checkpoint_steps(out):
    d = Path(out) / "checkpoints"
    names = os.listdir(d) if d.is_dir() else []
    assert not [n for n in names if ".tmp" in n], f"leftover temp files: {names}"
    return sorted(int(re.fullmatch(r"step_(\d+)\.pt", n).group(1)) for n in names)


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def wait_for(path, pattern, timeout, procs=()):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = Path(path).read_text() if Path(path).exists() else ""
        if re.search(pattern, text, re.M):
            return
        for p in procs:
            assert p.poll() is None, f"process exited early with {p.returncode}:\n{text}"
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} not seen in {path} within {timeout}s")


# --------------------------------------------------------------------------
@pytest.mark.parametrize("workload", WORKLOADS)
def test_single_process_lifecycle(workload, tmp_path):
    """One output dir through a job's life: injected crash -> requeued attempt
    resumes (bit-for-bit) and finishes while learning -> extended run resumes
    from the final checkpoint -> SIGTERM saves a checkpoint and exits 0.
    (Done in one test to keep process start-ups, ~4 s each, to a minimum.)"""
    out = tmp_path / "run"

    # 1. Crash injection: non-zero exit, message on stderr, last checkpoint 10.
    r = train(workload, out, "--crash_at_step", 15, "--crash_rank", 0)
    assert r.returncode != 0, r.stdout
    assert "RuntimeError: injected crash at step 15 on rank 0" in r.stderr
    assert "terminate called" not in r.stderr
    assert [m.group(1, 2) for m in START_RE.finditer(r.stdout)] == [("0", "1")]
    crashed = steps(r.stdout)
    assert sorted(crashed) == list(range(1, 15))
    assert checkpoint_steps(out) == [10]

    # 2. Requeued attempt with the crash disabled: resumes from step 10,
    #    replays steps 11..14 exactly (model, optimizer, data restored) and
    #    completes the default 60 steps.
    r = train(workload, out, "--crash_at_step", -1)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^resumed from checkpoint step=10 rank=0$", r.stdout, re.M)
    resumed = steps(r.stdout)
    assert sorted(resumed) == list(range(11, 61))
    for s in range(11, 15):
        assert resumed[s][0] == crashed[s][0], f"step {s} differs after resume"
    assert re.search(r"^done steps=60$", r.stdout, re.M)
    assert checkpoint_steps(out) == [40, 50, 60]  # only the last 3 are kept
    ckpt = torch.load(out / "checkpoints" / "step_60.pt", map_location="cpu", weights_only=False)
    assert ckpt["step"] == 60 and {"model", "optimizer", "rng"} <= set(ckpt)

    # It learned: compare steps 1-10 (first attempt) with steps 51-60.
    log = {**crashed, **resumed}
    first, last = range(1, 11), range(51, 61)
    if workload == "tiny_dpo":
        # DPO loss starts at log(2) (model == reference) and must drop; the
        # implicit preference accuracy must rise.
        assert log[1][0] == pytest.approx(0.6931, abs=1e-3)
        assert mean(log[s][0] for s in last) < mean(log[s][0] for s in first) - 0.1
        acc = lambda s: float(log[s][1]["implicit_acc"])  # noqa: E731
        assert mean(acc(s) for s in last) > mean(acc(s) for s in first) + 0.1
    else:
        rec = lambda s: float(log[s][1]["rec"])  # noqa: E731
        usage = lambda s: float(log[s][1]["codebook_usage"])  # noqa: E731
        assert mean(rec(s) for s in last) < 0.7 * mean(rec(s) for s in first)
        assert mean(usage(s) for s in last) > 2 * mean(usage(s) for s in first)
        assert mean(log[s][0] for s in last) < mean(log[s][0] for s in first)

    # 3. Extend the finished run (larger --max_train_steps): resumes from 60
    #    and continues at 61; then SIGTERM (preemption) mid-run makes it save
    #    a checkpoint at the current step and exit 0.
    logfile = tmp_path / "extend.log"
    with open(logfile, "w") as f:
        p = subprocess.Popen(
            [
                sys.executable,
                script(workload),
                "--output_dir",
                str(out),
                "--max_train_steps",
                "500",
                "--sleep_per_step",
                "0.1",
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    try:
        wait_for(logfile, r"^step=63 ", timeout=400, procs=[p])
        p.send_signal(signal.SIGTERM)
        code = p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = logfile.read_text()
    assert code == 0, text
    assert re.search(r"^resumed from checkpoint step=60 rank=0$", text, re.M)
    m = SIGNAL_RE.search(text)
    assert m and m.group(1) == "SIGTERM", text
    stop = int(m.group(2))
    extended = steps(text)
    assert min(extended) == 61 and max(extended) == stop and 63 <= stop < 500
    assert checkpoint_steps(out)[-1] == stop
    assert "done steps" not in text


@pytest.mark.parametrize("workload", WORKLOADS)
def test_accelerate_launch_two_processes(workload, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_machines",
        "1",
        "--num_processes",
        "2",
        "--main_process_port",
        str(free_port()),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        script(workload),
        "--output_dir",
        str(out),
        "--max_train_steps",
        "6",
        "--checkpointing_steps",
        "3",
    ]
    r = run(cmd, timeout=600)
    both = r.stdout + r.stderr
    assert r.returncode == 0, both
    assert "terminate called" not in both
    assert sorted(m.group(1, 2) for m in START_RE.finditer(r.stdout)) == [("0", "2"), ("1", "2")]
    for rank in (0, 1):
        log = steps(r.stdout, rank)
        assert sorted(log) == list(range(1, 7)), f"rank {rank}"
        assert all(ws == 2 for _, _, ws in log.values())
    assert len(re.findall(r"^done steps=6$", r.stdout, re.M)) == 1  # rank 0 only
    assert checkpoint_steps(out) == [3, 6]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_env_var_launch_two_processes_signal_to_one_rank(workload, tmp_path):
    """Two processes started directly with RANK/WORLD_SIZE/... (as an outer
    agent would).  SIGUSR1 goes to rank 1 only; both ranks must agree to stop
    at the same step, rank 0 saves a checkpoint, and both exit 0."""
    out, port = tmp_path / "run", free_port()
    procs, logs = [], []
    try:
        for rank in (0, 1):
            env = clean_env(
                RANK=rank, WORLD_SIZE=2, LOCAL_RANK=rank, LOCAL_WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=port
            )
            log = tmp_path / f"rank{rank}.log"
            with open(log, "w") as f:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            script(workload),
                            "--output_dir",
                            str(out),
                            "--max_train_steps",
                            "300",
                            "--sleep_per_step",
                            "0.1",
                            "--checkpointing_steps",
                            "1000",
                        ],
                        stdout=f,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
            logs.append(log)
        wait_for(logs[1], r"^step=3 ", timeout=180, procs=procs)
        procs[1].send_signal(signal.SIGUSR1)
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    for rank, text in enumerate(texts):
        assert "terminate called" not in text
        assert [m.group(1, 2) for m in START_RE.finditer(text)] == [(str(rank), "2")]
    m = SIGNAL_RE.search(texts[0])
    assert m and m.group(1) == "SIGUSR1", texts[0]
    stop = int(m.group(2))
    assert 3 <= stop < 300
    assert max(steps(texts[0], 0)) == max(steps(texts[1], 1)) == stop
    assert all(ws == 2 for _, _, ws in steps(texts[1], 1).values())
    assert checkpoint_steps(out) == [stop]
    assert "done steps" not in texts[0]
