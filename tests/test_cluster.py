"""The test Slurm cluster (tests/cluster/up.sh) is a real Slurm: partitions, GPUs, accounting,
node sharing, preemption, and an idempotent up.sh."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from slurm_helpers import job_state, wait_for_job

pytestmark = pytest.mark.slurm


def run(*args: str, timeout: float = 30) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=timeout).stdout


def sbatch(*args: str) -> str:
    return run("sbatch", "--parsable", *args).strip().split(";")[0]


def wait_running(job_ids: list[str], timeout: float = 30) -> None:
    """Wait until all jobs are RUNNING at the same time (squeue)."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        out = run("squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T")
        states = dict(line.split() for line in out.splitlines() if line.strip())
        if all(states.get(j) == "RUNNING" for j in job_ids):
            return
        time.sleep(0.3)
    raise AssertionError(f"jobs {job_ids} not all running within {timeout} s: {states}")


@pytest.mark.timeout(60)
def test_sinfo_shows_partitions_nodes_and_gpus(slurm_cluster):
    parts: dict[str, tuple[int, str]] = {}
    for line in run("sinfo", "-h", "-o", "%R %D %N").splitlines():
        name, count, nodes = line.split()
        parts[name] = (int(count), nodes)
    assert parts["debug-4090-01"] == (2, "node[1-2]")
    assert parts["debug-A10-01"] == (1, "node3")
    assert parts["urgent-4090"] == (2, "node[1-2]")

    gres = dict(line.split() for line in run("sinfo", "-h", "-N", "-o", "%N %G").splitlines())
    assert gres == {"node1": "gpu:rtx4090:4", "node2": "gpu:rtx4090:4", "node3": "gpu:a10:8"}
    default = run("scontrol", "show", "partition", "debug-4090-01")
    assert "Default=YES" in default


@pytest.mark.timeout(120)
def test_two_node_gpu_job_sees_its_gpus(slurm_cluster, tmp_path: Path):
    out = tmp_path / "out.txt"
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        "srun bash -c 'echo \"TASK $SLURM_PROCID node=$SLURMD_NODENAME"
        " cvd=$CUDA_VISIBLE_DEVICES user=$(id -un)\"'\n"
    )
    job = sbatch(
        "-p",
        "debug-4090-01",
        "-N",
        "2",
        "--ntasks-per-node=1",
        "--gres=gpu:rtx4090:2",
        "-o",
        str(out),
        str(script),
    )
    assert wait_for_job(job, timeout=90) == "COMPLETED", out.read_text() if out.exists() else ""

    tasks = re.findall(r"^TASK (\d+) node=(\S+) cvd=(\S*) user=(\S+)$", out.read_text(), re.M)
    assert len(tasks) == 2, out.read_text()
    assert {node for _, node, _, _ in tasks} == {"node1", "node2"}
    for _, node, cvd, _ in tasks:
        assert len(cvd.split(",")) == 2, f"{node} sees CUDA_VISIBLE_DEVICES={cvd!r}"
    alloc = run("sacct", "-j", job, "-X", "-n", "-P", "-o", "State,NNodes,AllocTRES")
    assert alloc.startswith("COMPLETED|2|"), alloc
    assert "gres/gpu:rtx4090=4" in alloc, alloc


@pytest.mark.timeout(120)
def test_two_jobs_share_one_node_with_distinct_gpus(slurm_cluster, tmp_path: Path):
    jobs = [
        sbatch(
            "-p",
            "debug-A10-01",
            "-N",
            "1",
            "--gres=gpu:a10:1",
            "-o",
            str(tmp_path / f"{i}.txt"),
            "--wrap",
            "echo cvd=$CUDA_VISIBLE_DEVICES; sleep 4",
        )
        for i in range(2)
    ]
    wait_running(jobs)  # both on node3 at the same time
    for job in jobs:
        assert wait_for_job(job, timeout=60) == "COMPLETED"
    cvds = {(tmp_path / f"{i}.txt").read_text().strip() for i in range(2)}
    assert len(cvds) == 2 and all(re.fullmatch(r"cvd=\d", c) for c in cvds), cvds


@pytest.mark.timeout(180)
@pytest.mark.disruptive  # preempts, kills a node or stops slurmdbd: run alone (tests/run.sh)
def test_urgent_partition_preempts_and_requeues(slurm_cluster, tmp_path: Path):
    # Both jobs want all 4 GPUs of node2, so only a job holding node2's GPUs gets preempted
    # (the cluster is shared with other test sessions).
    out = tmp_path / "low.txt"
    gpus = ["-w", "node2", "-N", "1", "--gres=gpu:rtx4090:4"]
    low = sbatch(
        "-p",
        "debug-4090-01",
        *gpus,
        "--open-mode=append",
        "-o",
        str(out),
        "--wrap",
        "echo run restart=${SLURM_RESTART_COUNT:-0}; sleep 6",
    )
    wait_running([low], timeout=90)
    urgent = sbatch("-p", "urgent-4090", *gpus, "-o", "/dev/null", "--wrap", "sleep 2")
    # The low-tier job is requeued (not failed) and runs again once the urgent job is done
    # (after AuthInfo=cred_expire=10 s; Slurm's default would be 120 s).
    assert wait_for_job(urgent, timeout=60) == "COMPLETED"
    assert wait_for_job(low, timeout=120) == "COMPLETED"
    text = out.read_text()
    assert "run restart=0" in text and "run restart=1" in text, text
    assert "DUE TO PREEMPTION" in text, text
    history = run("sacct", "-j", low, "-X", "-D", "-n", "-P", "-o", "State").split()
    assert history[0] == "PREEMPTED" and history[-1] == "COMPLETED", history
    assert job_state(low) == "COMPLETED"


@pytest.mark.timeout(60)
def test_up_sh_again_is_a_quick_noop(slurm_cluster):
    run_dir = slurm_cluster.state_dir / "run"
    pid_files = [run_dir / "munge" / "munged.pid", run_dir / "mysql" / "mariadbd.pid"]
    pid_files += sorted(run_dir.glob("*.pid"))  # slurmdbd, slurmctld, slurmd-node1..3
    before = {p.name: p.read_text() for p in pid_files if p.exists()}
    # 7 daemons, fewer only while another session holds a node down with node.sh stop
    assert {"munged.pid", "mariadbd.pid", "slurmdbd.pid", "slurmctld.pid"} <= set(before), before

    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(slurm_cluster.cluster_dir / "up.sh")], capture_output=True, text=True, timeout=50
    )
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "already running; nothing to do" in proc.stdout, proc.stdout
    assert "starting" not in proc.stdout, proc.stdout
    assert took < 10, f"second up.sh took {took:.1f} s"
    assert {p.name: p.read_text() for p in pid_files if p.exists()} == before
