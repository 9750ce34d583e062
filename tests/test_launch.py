"""Issues 3 and 4: `danlu submit` on the real test Slurm cluster and on the local default, and what runs
inside the job (node agent, ranks, per-rank logs, fail fast, per-job rendezvous ports).

The cluster jobs of this module are submitted together, once, by the module fixture `launched`, each from
its own private store and runs dir (exactly what `danlu_env` gives a single test), so they run concurrently
and the file stays within a few minutes; every test then waits for and checks its own job(s).
Other people's jobs may share the cluster: nothing here assumes an empty queue; only our own job ids
and job names are looked at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Dict, List

import pytest
from danlu_helpers import (  # noqa: F401
    danlu,
    danlu_env,
    private_env,
    status_json,
    submit_json,
    wait_for_log_text,
    wait_status,
)
from slurm_helpers import next_job_ids_from

from launcher.layout import RunLayout, SweepLayout

# ---- the jobs of this module (submitted together, see `launched`) --------------------------------
CRASH_STEPS, CRASH_SLEEP = 600, 0.5  # without fail fast: >= 5 minutes of training after the crash
# the reference model's pretraining (300 steps by default) only costs CPU in the jobs that prove
# fail fast and ports; this 2-core machine runs all of them at once
LIGHT = "+args.pretrain_steps=30"
# 5: two single-node jobs on node1 at the same time (each trains for >= 30 s), ids 17,000 apart
PORT_JOB = [
    "experiment=tiny_dpo",
    "cluster=testcluster",
    "resources.partition=debug-4090-01",
    "resources.exclude=node2",
    "args.sleep_per_step=1",
    "args.max_train_steps=30",
    LIGHT,
]
SCENARIOS: Dict[str, List[str]] = {
    # 1
    "single": ["experiment=tiny_dpo", "cluster=testcluster"],
    # 2
    "two_nodes": ["experiment=tiny_dpo", "cluster=testcluster", "resources.nodes=2", "resources.gpus_per_node=2"],
    # 3
    "crash": [
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.nodes=2",
        "resources.gpus_per_node=2",
        "args.crash_at_step=3",
        "args.crash_rank=3",
        f"args.sleep_per_step={CRASH_SLEEP}",
        f"args.max_train_steps={CRASH_STEPS}",
        "resources.time=00:10:00",
        LIGHT,
    ],
    # 4: one srun task per GPU; on the A10 node so they do not queue behind the 4090 jobs above
    "lightning": [
        "experiment=tiny_ibq",
        "launch=lightning",
        "cluster=testcluster",
        "resources.partition=debug-A10-01",
        "resources.gpus_per_node=2",
    ],
    "python": [
        "experiment=tiny_ibq",
        "launch=python",
        "cluster=testcluster",
        "resources.partition=debug-A10-01",
        "resources.gpus_per_node=2",
    ],
    # 6: the batch script's first srun asks for a GPU count no node has: Slurm really refuses to create that step
    # (as it did once right after a preempting job left the nodes); the second srun is the script's own
    "step_retry": [
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.partition=debug-A10-01",
        "args.max_train_steps=5",
        LIGHT,
        "env.setup=['danlu_test_first=1', 'srun() { if [ -n \"$danlu_test_first\" ]; then danlu_test_first=; "
        'command srun --gres=gpu:99 "$@"; else command srun "$@"; fi; }\']',
    ],
}
WAIT_S = 240  # per job, generous: other sessions may be using the cluster too

_RANK_LINE = re.compile(r"rank=(\d+) world_size=(\d+) local_rank=(\d+) node=(\S+)")
_AGENT_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d{3} \[danlu agent ")


class Launched:
    def __init__(self, name: str, env: Dict[str, str], out: dict) -> None:
        self.name, self.env, self.out = name, env, out
        self.sweep = out["sweep"]
        self.run = out["runs"][0]["run"]
        self.job_id = out["runs"][0]["job_id"]
        self.seconds = 0.0  # how long `danlu submit` took
        self.ended_at_return = False  # had the job written its result when `danlu submit` returned?

    def wait(self) -> dict:
        items = wait_status(self.run, self.env, timeout=WAIT_S)
        assert len(items) == 1, items
        return items[0]

    def wait_started(self) -> None:
        """Until the job's batch script runs and its node agent is up."""
        wait_for_log_text(self.log_dir(), " port ", WAIT_S)

    def attempt_dir(self, attempt: int = 1) -> Path:
        """Where the attempt's result.json is (launcher/layout.py)."""
        return self.layout().attempt(attempt).root

    def log_dir(self, attempt: int = 1, restart: int = 0) -> Path:
        """The logs of one start of the attempt."""
        return self.layout().attempt(attempt).restart(restart).root

    def layout(self) -> RunLayout:
        return SweepLayout(Path(self.env["DANLU_RUNS_DIR"]) / self.sweep).run(int(self.run.split("/")[1]))


@pytest.fixture(scope="module")
def launched(slurm_cluster, tmp_path_factory) -> Dict[str, Launched]:
    """Submit every cluster job of this module at once (each from its own store); tests wait on theirs."""
    jobs: Dict[str, Launched] = {}
    for name, overrides in SCENARIOS.items():
        env = private_env(tmp_path_factory.mktemp(f"launch-{name}"))
        t0 = time.time()
        out = submit_json(*overrides, env=env)
        jobs[name] = Launched(name, env, out)
        jobs[name].seconds = time.time() - t0
        jobs[name].ended_at_return = jobs[name].layout().attempt(1).result.exists()
    yield jobs
    for job in jobs.values():  # nothing of ours outlives the module (no-op for finished jobs)
        subprocess.run(["scancel", job.job_id], capture_output=True)


# ---- helpers ---------------------------------------------------------------------------------------
def sacct_times(job_id: str) -> Dict[str, object]:
    out = (
        subprocess.run(
            ["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State,Start,End,NodeList,ExitCode"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    assert out, f"sacct does not know job {job_id}"
    state, start, end, nodes, code = out[-1].split("|")
    parse = datetime.fromisoformat
    return dict(state=state, start=parse(start).timestamp(), end=parse(end).timestamp(), nodes=nodes, code=code)


def wait_sacct_end(job_id: str, timeout: float = 30) -> Dict[str, object]:
    """sacct's record once End is filled in (accounting may lag the store by a moment)."""
    deadline = time.time() + timeout
    while True:
        try:
            return sacct_times(job_id)
        except ValueError:  # End 'Unknown' while the job is completing
            if time.time() > deadline:
                raise
            time.sleep(1)


def agent_lines(log_dir: Path) -> Dict[str, List[str]]:
    return {p.name: p.read_text().splitlines() for p in sorted(log_dir.glob("agent-*.log"))}


def agent_ts(line: str) -> float:
    m = _AGENT_TS.match(line)
    assert m, line
    return datetime.fromisoformat(m.group(1)).timestamp()


def rank_lines(text: str) -> Dict[int, tuple]:
    """{rank: (world_size, local_rank, node)} from the workload's `rank=R world_size=W ...` lines."""
    found: Dict[int, tuple] = {}
    for m in _RANK_LINE.finditer(text):
        found[int(m.group(1))] = (int(m.group(2)), int(m.group(3)), m.group(4))
    return found


def jobs_named(name: str) -> List[str]:
    """Job ids Slurm knows (queue or accounting) whose job name starts with the sweep name."""
    q = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, check=True).stdout
    a = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "-S", "now-1hour", "-o", "JobID,JobName%200"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ids = [ln.split()[0] for ln in q.splitlines() if len(ln.split()) > 1 and ln.split()[1].startswith(name)]
    ids += [ln.split("|")[0] for ln in a.splitlines() if "|" in ln and ln.split("|")[1].startswith(name)]
    return ids


# ---- submit returns at once ------------------------------------------------------------------------
@pytest.mark.slurm
def test_submit_returns_once_slurm_accepted_the_jobs(launched):
    """`launched` submitted every job of this module (timing each submit); Slurm knows each job id."""
    for job in launched.values():
        assert job.out["runs"] == [{"run": job.run, "job_id": job.job_id}] and job.job_id.isdigit(), job.out
        # it did not wait for the job: the job had not ended when it returned (a loaded controller may start it
        # at once, so its first logs may already be there). The time is only a sanity bound: a submit composes,
        # renders and checks the program's flags, which took 34-83 s while three clusters' tests loaded this
        # 2-core machine
        assert not job.ended_at_return, job.name
        assert job.seconds < 150, f"{job.name}: submit took {job.seconds:.1f} s"
        known = subprocess.run(["squeue", "-h", "-j", job.job_id, "-o", "%i"], capture_output=True, text=True).stdout
        known += subprocess.run(
            ["sacct", "-n", "-X", "-j", job.job_id, "-o", "JobID"], capture_output=True, text=True
        ).stdout
        assert job.job_id in known.split(), (job.name, job.job_id)
    print("\nsubmit took " + ", ".join(f"{j.name} {j.seconds:.1f} s" for j in launched.values()))


# ---- 6 and 7: nothing reaches Slurm --------------------------------------------------------------------
@pytest.fixture
def sbatch_trace(tmp_path, danlu_env) -> Path:
    """Record every sbatch call danlu makes (a PATH shim that logs, then runs the real sbatch)."""
    shim = tmp_path / "shim"
    shim.mkdir()
    trace = tmp_path / "sbatch.trace"
    real = shutil.which("sbatch")
    assert real, "the test cluster's sbatch is not on PATH"
    (shim / "sbatch").write_text(f'#!/bin/bash\necho "$*" >> {trace}\nexec {real} "$@"\n')
    (shim / "sbatch").chmod(0o755)
    danlu_env["PATH"] = f"{shim}:{os.environ['PATH']}"
    return trace


def our_queue(name: str) -> List[str]:
    """Our jobs (by sweep name) in the queue; other sessions' jobs are never counted."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, check=True).stdout
    return [ln.split()[0] for ln in out.splitlines() if len(ln.split()) > 1 and ln.split()[1].startswith(name)]


@pytest.mark.slurm
def test_too_many_gpus_is_rejected_before_submitting(slurm_cluster, danlu_env, sbatch_trace):
    name = f"toomany-{uuid.uuid4().hex[:6]}"
    done = danlu(
        "submit",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.gpus_per_node=9",
        "--name",
        name,
        env=danlu_env,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and "gpus_per_node=9" in errors[0] and "4 GPUs" in errors[0], done.stderr
    assert any(ln.startswith("hint:") for ln in lines), done.stderr
    assert done.stdout == ""
    assert not sbatch_trace.exists(), sbatch_trace.read_text()
    assert our_queue(name) == [] and jobs_named(name) == []
    store = Path(danlu_env["DANLU_STORE"])
    assert not store.exists() or status_json(env=danlu_env) == []
    assert not Path(danlu_env["DANLU_RUNS_DIR"]).exists()


@pytest.mark.slurm
def test_dry_run_diffusion_dpo_prints_script_and_submits_nothing(slurm_cluster, danlu_env, sbatch_trace, tmp_path):
    """With a stand-in checkout of DiffusionDPO (train.py declaring upstream's flags, tests/upstream/) the dry run
    passes; without one it gives submit's verdict (exit 2), after printing the script all the same."""
    from test_program_flags import fake_checkout

    name = f"dry-{uuid.uuid4().hex[:6]}"
    queued_before = our_queue(name)
    missing = danlu(
        "submit",
        "experiment=diffusion_dpo",
        "cluster=testcluster",
        "workdir=/nonexistent/DiffusionDPO",
        "--dry-run",
        "--name",
        name,
        env=danlu_env,
    )
    assert missing.returncode == 2 and "error: workdir '/nonexistent/DiffusionDPO' does not exist" in missing.stderr
    assert missing.stdout.startswith("#!/bin/bash")
    checkout = fake_checkout(tmp_path / "DiffusionDPO", "diffusion_dpo_train.json", "train.py")
    done = danlu(
        "submit",
        "experiment=diffusion_dpo",
        "cluster=testcluster",
        f"workdir={checkout}",
        "env=none",
        "--dry-run",
        "--name",
        name,
        env=danlu_env,
    )
    assert done.returncode == 0, done.stderr
    assert "program args checked against the 51 argparse flags of train.py" in done.stderr
    script = done.stdout
    assert "--mixed_precision=fp16" in script  # train.py's own flag: it wins over accelerate's
    assert script.startswith("#!/bin/bash")
    assert "#SBATCH --partition=debug-4090-01\n" in script
    assert "#SBATCH --gres=gpu:rtx4090:4\n" in script
    assert "#SBATCH --nodes=1\n" in script and "#SBATCH --cpus-per-task=32\n" in script
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in script and "DANLU_HEAD_ADDR" in script
    assert "accelerate launch" in script and "--num_processes 4" in script and "--mixed_precision fp16" in script
    assert "--beta_dpo=5000" in script and "--gradient_accumulation_steps=128" in script
    assert "export HF_DATASETS_OFFLINE=1" in script
    assert "srun --kill-on-bad-exit=1" in script
    assert "--main_process_port @PORT@" in script and "29415" not in script  # per-job port, filled in by the agent
    assert "nothing submitted" in done.stderr
    # nothing reached Slurm and nothing was written
    assert not sbatch_trace.exists(), sbatch_trace.read_text()
    assert queued_before == [] and our_queue(name) == [] and jobs_named(name) == []
    assert not Path(danlu_env["DANLU_STORE"]).exists()
    assert not Path(danlu_env["DANLU_HOME"]).exists()
    assert not Path(danlu_env["DANLU_RUNS_DIR"]).exists()


# ---- 8. the local default: no Slurm on this machine -----------------------------------------------------
SLURM_COMMANDS = {
    "sbatch",
    "srun",
    "salloc",
    "squeue",
    "sacct",
    "scontrol",
    "scancel",
    "sinfo",
    "sattach",
    "sbcast",
    "sstat",
    "sshare",
    "sprio",
    "sreport",
    "sacctmgr",
    "sdiag",
    "strigger",
    "sview",
}


@pytest.fixture
def path_without_slurm(tmp_path) -> str:
    """A PATH with everything this machine has except Slurm's commands (a laptop, say)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d or not Path(d).is_dir() or d.startswith(str(tmp_path)):
            continue
        for exe in Path(d).iterdir():
            if exe.name in SLURM_COMMANDS or (bindir / exe.name).exists() or not os.access(exe, os.X_OK):
                continue
            (bindir / exe.name).symlink_to(exe)
    path = str(bindir)
    assert shutil.which("sbatch", path=path) is None and shutil.which("bash", path=path)
    return path


def test_tiny_ibq_runs_on_the_local_default_without_slurm(danlu_env, path_without_slurm):
    env = dict(danlu_env, PATH=path_without_slurm)
    t0 = time.time()
    done = danlu("submit", "experiment=tiny_ibq", "--wait", "--json", env=env, timeout=240)
    took = time.time() - t0
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = json.loads(done.stdout)
    run, job_id = out["runs"][0]["run"], out["runs"][0]["job_id"]
    assert job_id.startswith("local-"), out  # submitit's local executor, not Slurm
    item = status_json(run, env=env)[0]
    assert item["state"] == "COMPLETED" and item["nodelist"] == "localhost", item
    logs = danlu("logs", run, env=env, check=True).stdout
    assert "done steps=30" in logs and "rank=0 world_size=1" in logs, logs[-2000:]
    shown = json.loads(danlu("show", run, "--json", env=env, check=True).stdout)
    assert shown["config"]["cluster"]["name"] == "local"
    print(f"\nlocal tiny_ibq: {took:.0f} s with --wait")


def test_default_cluster_is_local_without_sbatch_and_the_users_choice_with_it(tmp_path, monkeypatch):
    from launcher.errors import UserError
    from launcher.spec.compose import Composer

    user = tmp_path / "jobs"
    (user / "local").mkdir(parents=True)
    (user / "local" / "default.yaml").write_text("# @package _global_\ndefaults:\n  - override /cluster: testcluster\n")

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    assert Composer().runs(["experiment=tiny_ibq"])[0].spec.cluster.name == "local"
    assert Composer(str(user)).runs(["experiment=tiny_ibq"])[0].spec.cluster.name == "local"  # no sbatch: always

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")
    with pytest.raises(UserError, match="no cluster chosen"):  # the embedded default: not on a login node
        Composer().runs(["experiment=tiny_ibq"])
    assert Composer(str(user)).runs(["experiment=tiny_ibq"])[0].spec.cluster.name == "testcluster"  # the user's
    assert Composer(str(user)).runs(["experiment=tiny_ibq", "cluster=local"])[0].spec.cluster.name == "local"


# ---- 1. the default shape on the test cluster -------------------------------------------------------
@pytest.mark.slurm
def test_tiny_dpo_completes_on_testcluster(launched):
    job = launched["single"]
    assert re.fullmatch(r"tiny_dpo-[0-9a-f]{4}/0", job.run) and job.job_id.isdigit(), job.out
    item = job.wait()
    assert item["state"] == "COMPLETED", item
    assert item["partition"] == "debug-4090-01" and item["exit_code"] == "0:0", item
    assert wait_sacct_end(job.job_id)["state"] == "COMPLETED"
    logs = danlu("logs", job.run, env=job.env, check=True).stdout
    assert rank_lines(logs) == {0: (1, 0, item["nodelist"])}, logs[-2000:]
    assert "done steps=30" in logs
    assert json.loads((job.attempt_dir() / "result.json").read_text())["exit_code"] == 0


# ---- 2. 2 nodes x 2 ranks through accelerate: ranks 0-3 of world size 4 across node1 and node2 --------
@pytest.mark.slurm
def test_two_nodes_four_ranks(launched):
    job = launched["two_nodes"]
    item = job.wait()
    assert item["state"] == "COMPLETED", item
    assert item["nodes"] == 2 and item["nodelist"] == "node[1-2]", item

    merged = danlu("logs", job.run, env=job.env, check=True).stdout
    # node rank 0 is the head node (first of node[1-2]); accelerate numbers ranks node by node
    assert rank_lines(merged) == {0: (4, 0, "node1"), 1: (4, 1, "node1"), 2: (4, 0, "node2"), 3: (4, 1, "node2")}, (
        merged[-3000:]
    )
    assert "done steps=30" in merged

    d = job.log_dir()
    for node, host in ((0, "node1"), (1, "node2")):
        text = (d / f"node{node}.log").read_text()
        assert set(rank_lines(text)) == {2 * node, 2 * node + 1}, text[-2000:]
        alog = (d / f"agent-node{node}.log").read_text()
        assert f"node {node}/2" in alog and f"[danlu agent node{node} {host}]" in alog and "exit code 0" in alog, alog
        assert "--num_machines 2" in alog and "--num_processes 4" in alog and f"--machine_rank {node}" in alog, alog
    for r in range(4):
        text = (d / f"rank{r}.log").read_text()
        assert rank_lines(text) == {r: (4, r % 2, "node1" if r < 2 else "node2")}, (r, text[-1000:])
        assert "step=30 " in text and f"rank={r} world_size=4" in text

    r3 = danlu("logs", job.run, "--rank", "3", env=job.env, check=True).stdout
    assert "rank=3 world_size=4 local_rank=1 node=node2" in r3
    steps = [ln for ln in r3.splitlines() if ln.startswith("step=")]
    assert len(steps) == 30 and all("rank=3 world_size=4" in ln for ln in steps), r3[-2000:]
    assert not re.search(r"(?<![\w])rank=[012] ", r3), "rank 3's log holds other ranks' lines"


# ---- 3. fail fast: rank 3 (on node2) crashes at step 3; the whole job ends at once -------------------
@pytest.mark.slurm
def test_crash_on_one_rank_ends_the_whole_job_fast(launched):
    job = launched["crash"]
    item = job.wait()
    assert item["state"] == "FAILED", item
    assert "RuntimeError: injected crash at step 3 on rank 3" in item["reason"], item

    acct = wait_sacct_end(job.job_id)
    assert acct["state"] == "FAILED", acct
    agents = agent_lines(job.log_dir())
    assert set(agents) == {"agent-node0.log", "agent-node1.log"}, agents
    # the crash: the first moment an agent saw its launcher exit non-zero. One agent ends the job: the first whose
    # launcher reported a failed rank. That may be node 1 (rank 3's) or node 0, whose ranks break in their next
    # collective within milliseconds, before torch elastic on node 1 has polled its crashed worker. The reason
    # above is read from rank 3's own traceback either way.
    failed = [ln for lines in agents.values() for ln in lines if "the launcher exited with code" in ln]
    assert len([ln for ln in failed if "ending the job" in ln]) == 1, agents
    crash_t = min(agent_ts(ln) for ln in failed)
    started = min(agent_ts(lines[0]) for lines in agents.values())
    to_end = acct["end"] - crash_t
    print(
        f"\ncrash job {job.job_id}: crash {crash_t - started:.0f} s after the agents started; "
        f"job end (sacct) {to_end:.0f} s after the crash; elapsed {acct['end'] - acct['start']:.0f} s"
    )
    assert to_end <= 60, f"job ended {to_end:.0f} s after the crash"
    d = job.log_dir()
    # the other ranks stopped where they were: none trained on for the minutes the rest of the run would take
    # (the job's start-up is not counted: 2x2 accelerate on a loaded 2-core machine may take minutes to step 1)
    steps = [int(s) for r in range(4) for s in re.findall(r"\bstep=(\d+) ", (d / f"rank{r}.log").read_text())]
    assert steps and max(steps) < 3 + 60 / CRASH_SLEEP, (max(steps or [0]), acct)
    assert "RuntimeError: injected crash at step 3 on rank 3" in (d / "node1.log").read_text()
    for r in range(4):  # nothing lost: every rank's log was collected although the job ended early
        assert f"rank={r} world_size=4" in (d / f"rank{r}.log").read_text(), r
    r3 = danlu("logs", job.run, "--rank", "3", env=job.env, check=True).stdout
    assert "RuntimeError: injected crash at step 3 on rank 3" in r3, r3[-2000:]
    assert "step=3 " not in r3
    assert json.loads((job.attempt_dir() / "result.json").read_text())["exit_code"] != 0


def test_a_step_slurm_could_not_create_is_tried_again_and_a_step_that_ran_never(launched):
    """srun fails before any task starts ("Unable to create step"): the batch script tries again 10 s later and
    the run completes, its program started once. A step whose program ran and failed (the crash job) is not
    started again."""
    job = launched["step_retry"]
    item = job.wait()
    assert item["state"] == "COMPLETED", item
    out = job.layout().slurm_output(job.job_id).read_text()
    assert "Unable to create step" in out, out[-2000:]
    assert out.count("danlu: srun started no task (exit 1): trying again in 10s (1 of 3)") == 1, out[-2000:]
    assert "(2 of 3)" not in out, out[-2000:]
    starts = [ln for ln in (job.log_dir() / "agent-node0.log").read_text().splitlines() if " restart 0: node " in ln]
    assert len(starts) == 1, starts
    crash = launched["crash"]
    crash.wait()
    crash_out = crash.layout().slurm_output(crash.job_id).read_text()
    assert "srun started no task" not in crash_out, crash_out[-2000:]
    for agent in ("agent-node0.log", "agent-node1.log"):
        lines = (crash.log_dir() / agent).read_text().splitlines()
        assert len([ln for ln in lines if " restart 0: node " in ln]) == 1, lines


# ---- 4. Lightning / plain python: one srun task per GPU, each the program itself ---------------------
@pytest.mark.slurm
@pytest.mark.parametrize("mode", ["lightning", "python"])
def test_one_task_per_gpu_modes(launched, mode):
    job = launched[mode]
    item = job.wait()
    assert item["state"] == "COMPLETED", item
    assert item["nodes"] == 1 and item["nodelist"] == "node3" and item["partition"] == "debug-A10-01", item
    shown = json.loads(danlu("show", job.run, "--json", env=job.env, check=True).stdout)
    script = json.dumps(shown)
    assert "--ntasks-per-node=2" in script and "gpu:a10:2" in script, script[:3000]

    d = job.log_dir()
    assert sorted(p.name for p in d.glob("rank*.log")) == ["rank0.log", "rank1.log"]
    for r in (0, 1):
        assert rank_lines((d / f"rank{r}.log").read_text()) == {r: (2, r, "node3")}
        alog = (d / f"agent-rank{r}.log").read_text()  # one agent per srun task
        assert f"task {r}/2" in alog and "exit code 0" in alog, alog
    merged = danlu("logs", job.run, env=job.env, check=True).stdout
    assert set(rank_lines(merged)) == {0, 1}
    assert "done steps=30" in merged


# ---- 5. two jobs on the same node at the same time: different rendezvous ports ----------------------
@pytest.mark.slurm
@pytest.mark.disruptive  # reconfigures the controller's job numbering: run alone (tests/run.sh)
def test_jobs_sharing_a_node_use_different_ports(slurm_cluster, tmp_path):
    """Job ids 17,000 apart: a port derived from the id modulo 17,000 would give both jobs one port."""
    a = Launched("port_a", private_env(tmp_path / "a"), submit_json(*PORT_JOB, env=private_env(tmp_path / "a")))
    jobs = [a]
    try:
        a.wait_started()
        with next_job_ids_from(int(a.job_id) + 17000, slurm_cluster.state_dir):
            b = Launched("port_b", private_env(tmp_path / "b"), submit_json(*PORT_JOB, env=private_env(tmp_path / "b")))
            jobs.append(b)
            b.wait_started()
        assert int(b.job_id) - int(a.job_id) == 17000, (a.job_id, b.job_id)
        ports, spans = {}, {}
        for job in jobs:
            item = job.wait()
            assert item["state"] == "COMPLETED", item
            assert item["nodelist"] == "node1", item
            acct = wait_sacct_end(job.job_id)
            spans[job.name] = (acct["start"], acct["end"])
            logs = job.layout().logs_dir
            starts = sorted(str(p.relative_to(logs)) for p in logs.glob("*/restart-*"))
            assert starts == ["attempt-1/restart-0"], (job.name, starts)  # nothing requeued either job
            lines = (job.log_dir() / "agent-node0.log").read_text()
            m = re.search(r" head (\S+) port (\d+)", lines)
            assert m, lines
            ports[job.name] = int(m.group(2))
            assert f"--main_process_port {m.group(2)} " in lines, lines  # the launcher really used it
        overlap = min(spans["port_a"][1], spans["port_b"][1]) - max(spans["port_a"][0], spans["port_b"][0])
        print(f"\nports {ports}; jobs {a.job_id} and {b.job_id} overlapped {overlap:.0f} s on node1")
        assert overlap >= 10, spans
        assert ports["port_a"] != ports["port_b"], ports
    finally:
        for job in jobs:
            subprocess.run(["scancel", job.job_id], capture_output=True)
