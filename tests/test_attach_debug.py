"""`danlu attach` and `danlu debug` without a cluster: the srun and salloc command lines they build (quoting, array
tasks, node choice, the job's shape and environment), and every refusal (exit 2, one line and a hint, nothing run)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
from danlu_helpers import danlu_env, danlu_inprocess, local_run_row  # noqa: F401

from launcher import slurm
from launcher.plan.interactive import shell_command, shell_word

TINY = ["experiment=tiny_ibq", "launch=torchrun", "cluster=testcluster"]


@pytest.fixture(autouse=True)
def no_exec(monkeypatch: pytest.MonkeyPatch) -> List[List[str]]:
    """Nothing is ever run: an exec fails the test, and Slurm's one read (squeue %A) answers from here."""

    def refuse(*args: Any) -> None:
        raise AssertionError(f"exec {args}")

    monkeypatch.setattr("os.execvp", refuse)
    asked: List[List[str]] = []

    def fake_run(cmd: List[str], timeout: float = 60) -> str:
        asked.append(cmd)
        assert cmd[:2] == ["squeue", "-h"], cmd
        return "9001\n"

    monkeypatch.setattr(slurm, "run", fake_run)
    return asked


def _config(overrides: List[str]) -> Dict[str, Any]:
    from launcher.spec.compose import Composer

    return Composer().runs(overrides, False)[0].resolved


def record(env: Dict[str, str], state: str, kind: str = "slurm", job_id: str = "77", nodelist: str = "node[1-2]"):
    """A run `att/0` of 2 nodes in a private store, in `state`; Slurm is never asked (refresh keeps the rows)."""
    from launcher.store import Store

    sweep_dir = Path(env["DANLU_RUNS_DIR"]) / "att"
    workdir = Path(env["DANLU_RUNS_DIR"]).parent / "work dir"
    workdir.mkdir(parents=True, exist_ok=True)
    config = _config(TINY + ["resources.nodes=2", "resources.gpus_per_node=1", "+env.vars.MY_VAR='a b;c'"])
    row = local_run_row(sweep_dir, "att", 0, workdir, config, cluster_kind=kind, nodes=2, partition="debug-4090-01")
    Path(env["DANLU_STORE"]).parent.mkdir(parents=True, exist_ok=True)
    store = Store(Path(env["DANLU_STORE"]))
    try:
        assert store.create_sweep("att", "tiny_ibq", "testcluster", [], ["danlu"], str(sweep_dir), [row])
        store.record_job("t:0", job_id, False)
        final = state in ("COMPLETED", "FAILED", "CANCELLED")
        store.update_attempts([{"run": "att/0", "attempt": 1, "state": state, "final": final, "nodelist": nodelist}])
    finally:
        store.close()
    return workdir


@pytest.fixture
def no_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    from launcher.state import reconcile

    monkeypatch.setattr(reconcile, "refresh", lambda store, rows, early=None: reconcile.Reconciled(rows, []))


def attach(env: Dict[str, str], monkeypatch, capsys, *args: str) -> subprocess.CompletedProcess:
    return danlu_inprocess(["attach", *args], env, monkeypatch, capsys)


def test_attach_runs_srun_overlap_in_the_runs_job_on_the_chosen_node(danlu_env, no_refresh, monkeypatch, capsys):
    workdir = record(danlu_env, "RUNNING")
    done = attach(
        danlu_env, monkeypatch, capsys, "att/0", "--node", "1", "--dry-run", "--", "py-spy", "dump", "--pid", "7"
    )
    assert done.returncode == 0, done.stderr
    argv = shlex.split(done.stdout)
    assert argv[:6] == ["srun", "--overlap", "--jobid=77", "--nodes=1", "--ntasks=1", "--nodelist=node2"]
    assert "--pty" not in argv  # a command, and no terminal
    assert argv[6:9] == ["bash", "-c", 'eval "$1"; shift; exec "$@"'] and argv[-4:] == ["py-spy", "dump", "--pid", "7"]
    setup = argv[10]
    assert f"cd {shlex.quote(str(workdir))}" in setup
    assert "export MY_VAR='a b;c'" in setup and "export DANLU_RUN_ID=att/0" in setup
    assert "HF_TOKEN" in setup and "HF_TOKEN=" not in setup  # secrets: named, never written


def test_attach_to_an_array_task_uses_the_tasks_own_job_id(danlu_env, no_refresh, monkeypatch, capsys, no_exec):
    record(danlu_env, "RUNNING", job_id="77_3", nodelist="node1")
    done = attach(danlu_env, monkeypatch, capsys, "att/0", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "--jobid=9001" in shlex.split(done.stdout)
    assert no_exec == [["squeue", "-h", "-j", "77_3", "-o", "%A"]]


@pytest.mark.parametrize(
    "state, args, said, hint",
    [
        ("PENDING", [], "att/0 is PENDING, not RUNNING", "wait until it starts"),
        ("COMPLETED", [], "att/0 is COMPLETED, not RUNNING", "danlu logs att/0"),
        ("UNKNOWN", [], "att/0 is UNKNOWN, not RUNNING", "danlu status att/0"),
        ("RUNNING", ["--node", "2"], "--node 2 is out of range: att/0 runs on 2 node(s) (node1, node2)", "0 to 1"),
        ("RUNNING", ["--node", "-1"], "--node -1 is out of range", "0 or more"),
    ],
)
def test_attach_refuses_with_one_line_and_a_hint(danlu_env, no_refresh, monkeypatch, capsys, state, args, said, hint):
    record(danlu_env, state)
    done = attach(danlu_env, monkeypatch, capsys, "att/0", *args)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and said in lines[0] and lines[1].startswith("hint: ") and hint in lines[1], lines


def test_attach_refuses_a_local_run_and_names_its_workdir(danlu_env, no_refresh, monkeypatch, capsys):
    workdir = record(danlu_env, "RUNNING", kind="local", job_id="local-123")
    done = attach(danlu_env, monkeypatch, capsys, "att/0", "--dry-run")
    assert done.returncode == 2
    error, hint = done.stderr.splitlines()
    assert "local run" in error and hint.startswith(f"hint: cd {shlex.quote(str(workdir))}")


def test_attach_refuses_an_unknown_run(danlu_env, monkeypatch, capsys):
    done = attach(danlu_env, monkeypatch, capsys, "nope/0")
    assert done.returncode == 2 and done.stderr.startswith("error: no run named 'nope/0'")


def test_a_shell_gets_its_setup_as_an_rc_file_and_a_command_runs_after_it():
    assert shell_command("export A=1", []) == [
        "bash",
        "-c",
        'exec bash --rcfile <(printf "%s\\n" "$1") -i',
        "danlu-shell",
        "export A=1",
    ]
    out = subprocess.run(
        shell_command("export A='x y'", ["bash", "-c", 'printf "%s|" "$A" "$1"', "_", "it's"]),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "x y|it's|"


def test_the_node_agents_tokens_become_the_shells_variables_and_the_rest_is_quoted():
    assert shell_word("--rdzv_endpoint=@HEAD_ADDR@:@PORT@") == '--rdzv_endpoint="$DANLU_HEAD_ADDR":"$DANLU_PORT"'
    assert shell_word("a b'; rm -rf ~") == shlex.quote("a b'; rm -rf ~")
    assert shell_word("") == "''"


def debug(env: Dict[str, str], monkeypatch, capsys, *args: str) -> subprocess.CompletedProcess:
    return danlu_inprocess(["debug", *args], env, monkeypatch, capsys)


@pytest.fixture
def no_cluster_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live cluster is not asked (as in the other unit tests of submit)."""
    from launcher.submit import live_checks

    monkeypatch.setattr(
        live_checks, "against_the_live_cluster", lambda cfgs, shapes, problems, refresh, keep: ([], None)
    )


def test_debug_asks_salloc_for_the_shape_of_the_job_script(danlu_env, no_cluster_facts, monkeypatch, capsys):
    over = TINY + ["resources.nodes=2", "resources.gpus_per_node=1", "args.max_train_steps=3"]
    done = debug(danlu_env, monkeypatch, capsys, *over, "--dry-run")
    assert done.returncode == 0, done.stderr
    argv = shlex.split(done.stdout)
    cut = argv.index("srun")
    salloc, step = argv[:cut], argv[cut:]
    assert salloc[0] == "salloc" and salloc[1].startswith("--job-name=debug-")
    assert set(salloc[2:]) == {
        "--partition=debug-4090-01",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--cpus-per-task=1",
        "--gres=gpu:rtx4090:1",
        "--time=00:15:00",
    }
    assert step[:3] == ["srun", "--nodes=1", "--ntasks=1"]
    setup = step[-1]
    assert "danlu-run() {" in setup and "danlu-run-all() {" in setup and "--nodes=2 --ntasks=2" in setup
    assert '--node_rank "${SLURM_NODEID:-0}"' in setup and "--max_train_steps=3" in setup
    assert "launcher.job.port" in setup  # the head and port found as the job script finds them
    assert not (Path(danlu_env["DANLU_RUNS_DIR"]) / ".danlu-debug").exists()  # a dry run writes nothing
    assert "nothing recorded" in done.stderr


def test_debug_with_debugpy_starts_rank_0_under_debugpy_and_says_how_to_connect(
    danlu_env, no_cluster_facts, monkeypatch, capsys
):
    done = debug(danlu_env, monkeypatch, capsys, *TINY, "--debugpy", "--dry-run")
    assert done.returncode == 0, done.stderr
    setup = shlex.split(done.stdout)[-1]
    assert "--no-python bash -c" in setup and "-m debugpy --listen 0.0.0.0:5678 --wait-for-client" in setup
    assert "ProxyJump" in setup and '"request": "attach"' in setup


def test_debug_gives_submits_error_for_a_bad_override(danlu_env, no_cluster_facts, monkeypatch, capsys):
    bad = [*TINY, "args.no_such_flag=1"]
    sub = danlu_inprocess(["submit", *bad, "--dry-run"], danlu_env, monkeypatch, capsys)
    done = debug(danlu_env, monkeypatch, capsys, *bad)
    assert done.returncode == sub.returncode == 2
    assert done.stderr.splitlines()[-2:] == sub.stderr.splitlines()[-2:]
    assert done.stdout == ""


def test_debug_refuses_a_local_cluster(danlu_env, no_cluster_facts, monkeypatch, capsys):
    done = debug(danlu_env, monkeypatch, capsys, "experiment=tiny_ibq", "cluster=local")
    assert done.returncode == 2
    error, hint = done.stderr.splitlines()[-2:]
    assert "local" in error and hint.startswith("hint: ")


def test_salloc_leaves_out_the_batch_only_options():
    options = ["--job-name=x", "--comment=danlu:t:0", "--partition=p", "--output=o", "--requeue", "--signal=USR2@9"]
    assert slurm.salloc_argv(options, "dbg", ["srun", "true"]) == [
        "salloc",
        "--job-name=dbg",
        "--partition=p",
        "srun",
        "true",
    ]
