"""The run store: WAL, versioned schema with migrations, concurrent processes, corruption.

The last test is an integration test on the test Slurm cluster: 8 concurrent `danlu submit`
processes and concurrent `danlu status` calls leave every submitted run in the store exactly once.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from danlu_helpers import danlu, danlu_env  # noqa: F401

from launcher.errors import UserError
from launcher.state.names import TERMINAL
from launcher.store import MIGRATIONS, NewRun, Store


def _runs(sweep: str, n: int, tag: str) -> list[NewRun]:
    return [
        NewRun(
            run=f"{sweep}/{i}",
            idx=i,
            overrides=[f"args.i={i}"],
            config={"args": {"i": i}},
            run_dir=f"/tmp/{sweep}/{i}",
            workdir="/tmp",
            git_commit="abc",
            git_dirty=False,
            partition="debug-4090-01",
            nodes=1,
            cluster_kind="slurm",
            script="/tmp/s.sbatch",
            command="python train.py",
            tag=tag,
            array_task=i if n > 1 else None,
        )
        for i in range(n)
    ]


def test_fresh_store_is_wal_and_at_the_latest_schema(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    assert store.query("PRAGMA user_version")[0][0] == len(MIGRATIONS) >= 2
    tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sweeps", "runs", "attempts"} <= tables
    assert (tmp_path / "s.sqlite").stat().st_mode & 0o077 == 0  # the owner's only


def test_old_store_is_migrated_forward_keeping_its_data(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO sweeps VALUES ('s','tiny_dpo','testcluster',0,'[]','[]','/tmp/s')")
    db.execute("INSERT INTO runs VALUES ('s/0','s',0,'[]','{}','/tmp/s/0','/tmp',NULL,NULL,NULL,1,'slurm',0)")
    db.execute(
        "INSERT INTO attempts (run, attempt, token, job_id, state, updated) VALUES ('s/0',1,'t','17','PENDING',0)"
    )
    db.execute("INSERT INTO runs VALUES ('s/1','s',1,'[]','{}','/tmp/s/1','/tmp',NULL,NULL,NULL,1,'slurm',0)")
    db.execute(
        "INSERT INTO attempts (run, attempt, token, job_id, state, updated) VALUES ('s/1',1,'t','18','FAILED',0)"
    )
    db.close()
    store = Store(path)
    assert store.query("PRAGMA user_version")[0][0] == len(MIGRATIONS)
    indexes = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "attempts_job" in indexes  # migration 2 ran
    pending, failed = store.latest()
    assert pending["run"] == "s/0" and pending["job_id"] == "17" and pending["state"] == "PENDING"
    # migration 3: the states that were final stay final, the others are looked at again
    assert (pending["final"], failed["final"]) == (0, 1)


def test_store_from_a_newer_danlu_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 5}")
    db.commit()
    db.close()
    with pytest.raises(UserError) as e:
        Store(path)
    assert "newer than this danlu" in e.value.message


def test_final_states_are_never_overwritten(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    assert store.create_sweep("s", "tiny_dpo", "testcluster", [], [], "/tmp/s", _runs("s", 2, "t:0"))
    store.record_job("t:0", "100", array=True)
    assert [r["job_id"] for r in store.latest()] == ["100_0", "100_1"]
    store.update_attempts(
        [
            {"run": "s/0", "attempt": 1, "state": "COMPLETED", "reason": "", "final": True},
            {"run": "s/1", "attempt": 1, "state": "PREEMPTED", "reason": "", "final": False},
        ]
    )
    # an older answer from a slower concurrent `danlu status` arrives after the final one
    store.update_attempts(
        [
            {"run": "s/0", "attempt": 1, "state": "RUNNING", "nodelist": "node1", "final": False},
            {"run": "s/1", "attempt": 1, "state": "RUNNING", "nodelist": "node2", "final": False},
        ]
    )
    states = {r["run"]: (r["state"], r["nodelist"], r["final"]) for r in store.latest()}
    # a provisional PREEMPTED (Slurm may requeue it) does change: the job is running again
    assert states == {"s/0": ("COMPLETED", None, 1), "s/1": ("RUNNING", "node2", 0)}
    assert "COMPLETED" in TERMINAL and "RUNNING" not in TERMINAL


def test_taken_sweep_name_writes_nothing(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    assert store.create_sweep("s", "e", "c", [], [], "/tmp/s", _runs("s", 1, "a:0"))
    assert not store.create_sweep("s", "e", "c", [], [], "/tmp/s", _runs("s", 3, "b:0"))
    assert [r["run"] for r in store.latest()] == ["s/0"]
    assert store.query("SELECT COUNT(*) FROM attempts")[0][0] == 1


def _writer(path: str, k: int, n_sweeps: int) -> None:
    store = Store(Path(path))
    for j in range(n_sweeps):
        sweep = f"w{k}-{j}"
        assert store.create_sweep(sweep, "e", "c", [], [], "/tmp", _runs(sweep, 3, f"{sweep}:0"))
        store.record_job(f"{sweep}:0", str(1000 * k + j), array=True)
        store.update_attempts([{"run": f"{sweep}/1", "attempt": 1, "state": "RUNNING", "final": False}])
        store.latest()  # readers interleave with the other writers


@pytest.mark.parametrize("mode", ["local", "network"])
def test_concurrent_processes_lose_nothing(tmp_path, monkeypatch, mode):
    """8 processes open the same new store at once (schema creation races too) and write 20 sweeps each: in WAL
    mode, and in the mode for network file systems (lock directory, a connection per use), here on a local disk
    (tests/test_store_shared.py runs it across two sshfs mounts)."""
    monkeypatch.setenv("DANLU_STORE_FS", mode)
    path = str(tmp_path / "s.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, k, 20)) for k in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    store = Store(Path(path))
    rows = store.latest()
    assert len(rows) == 8 * 20 * 3 and len({r["run"] for r in rows}) == len(rows)
    assert sum(r["state"] == "RUNNING" for r in rows) == 8 * 20
    assert all(r["job_id"] and r["state"] in ("PENDING", "RUNNING") for r in rows)
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"
    assert store.query("PRAGMA journal_mode")[0][0] == ("wal" if mode == "local" else "delete")
    assert not list(tmp_path.glob("*.lock*")), "a lock directory was left behind"


@pytest.mark.parametrize("damage", ["garbage", "pages"])
def test_corrupted_store_is_bad_input_with_a_hint(tmp_path, danlu_env, damage):
    path = Path(danlu_env["DANLU_STORE"])
    path.parent.mkdir(parents=True)
    if damage == "garbage":
        path.write_bytes(b"this is not a database\n" * 100)
    else:  # a real store whose pages were overwritten after its header
        store = Store(path)
        store.create_sweep("s", "e", "c", [], [], "/tmp", _runs("s", 50, "t:0"))
        store.query("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        data = bytearray(path.read_bytes())
        data[200:] = b"\xde\xad\xbe\xef" * ((len(data) - 200) // 4) + b"\0" * ((len(data) - 200) % 4)
        path.write_bytes(bytes(data))
    for args in (["status", "--all"], ["show", "s/0"], ["cancel", "s"], ["logs", "s/0"]):
        done = danlu(*args, env=danlu_env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines[0].startswith("error: the run store") and "unreadable" in lines[0], done.stderr
        assert lines[1].startswith("hint: "), done.stderr
        assert "Traceback" not in done.stderr


# ---- integration: concurrent CLI processes on the real cluster ----------------------------------
@pytest.mark.slurm
def test_concurrent_submits_and_status_keep_every_run_exactly_once(slurm_cluster, danlu_env):
    """8 `danlu submit` at once (4 single runs, 4 two-run sweeps; held jobs, so nothing runs)
    while `danlu status` runs over and over: every run is in the store exactly once, with the job
    id its submit printed, and squeue's comments name exactly those jobs."""
    env = dict(os.environ, **danlu_env, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    base = [
        sys.executable,
        "-m",
        "launcher.cli",
        "submit",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.extra_sbatch=[--hold]",
        "--json",
    ]
    cmds = [base + (["-m", "args.seed=0,1"] if k % 2 else [f"args.seed={k}"]) for k in range(8)]
    status_cmd = [sys.executable, "-m", "launcher.cli", "status", "--all", "--json"]
    cwd = str(Path(__file__).resolve().parent.parent)
    submits = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd) for c in cmds
    ]
    status_results = []
    while any(p.poll() is None for p in submits):
        pollers = [
            subprocess.Popen(status_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
            for _ in range(2)
        ]
        status_results += [(p.wait(120), *p.communicate()) for p in pollers]
    outs = [(p.returncode, *p.communicate()) for p in submits]
    printed = {}
    try:
        for code, out, err in outs:
            assert code == 0, err
            data = json.loads(out)
            for r in data["runs"]:
                printed[r["run"]] = r["job_id"]
        assert status_results and all(code == 0 for code, _, _ in status_results), status_results
        for _, out, _ in status_results:  # every answer during the submissions is consistent
            items = json.loads(out)
            assert len({i["run"] for i in items}) == len(items)

        assert len(printed) == 4 * 1 + 4 * 2
        store = sqlite3.connect(danlu_env["DANLU_STORE"])
        rows = store.execute("SELECT run, attempt, job_id, state, token FROM attempts").fetchall()
        assert len(rows) == 12 and len({r[0] for r in rows}) == 12  # exactly once
        assert {r[0]: r[2] for r in rows} == printed
        assert {r[3] for r in rows} == {"PENDING"}
        assert store.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 12
        assert store.execute("SELECT COUNT(*) FROM sweeps").fetchone()[0] == 8
        tokens = {r[4].split(":")[0] for r in rows}
        assert len(tokens) == 8
        # the queue agrees: the jobs commented with our tokens are exactly the printed ones
        q = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%k"], capture_output=True, text=True, check=True).stdout
        ours = {
            line.split("|")[0]
            for line in q.splitlines()
            if line.count("|") == 1
            and line.split("|")[1].startswith("danlu:")
            and line.split("|")[1].split(":")[1] in tokens
        }
        assert ours == set(printed.values())
        final = json.loads(danlu("status", "--all", "--json", env=danlu_env, check=True).stdout)
        assert sorted(i["run"] for i in final) == sorted(printed)
        assert all(i["state"] == "PENDING" and i["reason"] == "JobHeldUser" for i in final), final
    finally:
        sweeps = sorted({r.split("/")[0] for r in printed})
        if sweeps:
            danlu("cancel", *sweeps, env=danlu_env)


def test_opening_a_new_store_while_another_process_creates_it_waits(tmp_path):
    """The first `danlu status` of a new store can race the `danlu submit` creating it: SQLite then leaves the
    journal mode unchanged without waiting. The opener waits for the lock instead of calling the store broken."""
    import threading
    import time

    path = tmp_path / "store.sqlite"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE early (x)")  # a write lock on a store still in rollback-journal mode
    assert holder.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    threading.Timer(1.0, lambda: holder.execute("COMMIT")).start()
    started = time.monotonic()
    store = Store(path)
    waited = time.monotonic() - started
    try:
        assert store.query("PRAGMA journal_mode")[0][0] == "wal"
        assert store.query("PRAGMA user_version")[0][0] == len(MIGRATIONS)
        assert waited >= 0.9, waited  # it waited for the other writer rather than failing at once
    finally:
        store.close()
        holder.close()


def test_rows_made_from_updates_are_the_rows_the_store_then_has(tmp_path):
    """After a refresh that changed thousands of runs, status makes their rows from the updates (store.updated_rows)
    instead of reading them again: for every view it uses they must be exactly what a read gives, value types
    included (SQLite stores 3 in a REAL column as 3.0); a final attempt is never changed, and then the rows are read."""
    store = Store(tmp_path / "s.sqlite")
    runs = _runs("s", 4, "t:0")
    assert store.create_sweep("s", "tiny_dpo", "testcluster", [], [], str(tmp_path / "s"), runs)
    store.record_job("t:0", "100", True)
    updates = [
        {
            "run": "s/0",
            "attempt": 1,
            "state": "COMPLETED",
            "reason": "",
            "exit_code": "0:0",
            "nodelist": "node1",
            "started": 5,
            "ended": 9,
            "elapsed": 4,
            "restarts": 0,
            "partition": "debug-A10-01",
            "final": True,
            "accounting": "100_0|COMPLETED",
        },
        {
            "run": "s/1",
            "attempt": 1,
            "state": "RUNNING",
            "reason": "",
            "nodelist": "node2",
            "elapsed": 3,
            "partition": None,
            "restarts": None,
            "started": None,
            "final": False,
        },
        {
            "run": "s/3",
            "attempt": 1,
            "state": "PENDING",
            "reason": "Priority",
            "nodelist": None,
            "elapsed": 0,
            "partition": None,
            "final": False,
        },
    ]
    for view in ("table", "brief"):
        before = store.latest(view=view)
        if view == "brief":  # the second round: s/0 is final now, its update is refused, and s/1's is taken
            updates = [dict(updates[0], state="FAILED"), dict(updates[1], elapsed=7.5, restarts=1)]
        applied = store.update_attempts(updates)
        after = store.latest(view=view)
        made = store.updated_rows(before, {u["run"]: u for u in updates})
        if applied == len(updates):
            assert [tuple(r) for r in made] == [tuple(r) for r in after]
            assert [[type(v) for v in r] for r in made] == [[type(v) for v in r] for r in after]
            assert made[0].keys() == after[0].keys() and made[1]["state"] == "RUNNING"
            assert made[3]["a_partition"] == "debug-4090-01"  # none of its own: the run's partition
        else:  # refresh reads the rows again when the store refused an update
            assert view == "brief" and applied == 1 and after[0]["state"] == "COMPLETED"
    assert store.updated_rows(store.latest(view="table"), {"s/2": {"run": "s/2", "attempt": 2, "final": False}}) is None
