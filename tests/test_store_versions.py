"""Stores written by another danlu version: a newer one is refused and left as it is, an older one is kept as a
copy before it is upgraded. Real SQLite files and the real CLI; no Slurm."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Dict

import pytest
from danlu_helpers import danlu, private_env

from launcher.store import MIGRATIONS, Store
from launcher.store.output_dir import stored_output_dir

NEWEST = len(MIGRATIONS)


def _env(tmp_path: Path, fs: str) -> Dict[str, str]:
    env = private_env(tmp_path)
    env["DANLU_STORE_FS"] = fs
    return env


def _store_path(env: Dict[str, str]) -> Path:
    path = Path(env["DANLU_STORE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _newer_store(path: Path, made_in: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store this danlu makes (in `made_in` mode), then marked as written by a danlu two schemas ahead."""
    monkeypatch.setenv("DANLU_STORE_FS", made_in)
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={NEWEST + 2}")
    db.commit()
    db.close()


def _old_store(path: Path, version: int) -> None:
    """A store at schema `version` as the danlu of that schema made it, with one sweep, two runs and two attempts."""
    db = sqlite3.connect(path, isolation_level=None)
    db.create_function("danlu_output_dir", 3, stored_output_dir)  # as launcher/store/migrate.py defines it
    for script in MIGRATIONS[:version]:
        db.executescript(script)
    db.execute(f"PRAGMA user_version={version}")
    db.execute(
        "INSERT INTO sweeps (sweep, experiment, cluster, created, overrides, argv, sweep_dir) "
        "VALUES ('s','tiny_dpo','local',0,'[]','[]','/tmp/s')"
    )
    for i in range(2):
        db.execute(
            "INSERT INTO runs (run, sweep, idx, overrides, config, run_dir, workdir, git_commit, git_dirty, partition, "
            "nodes, cluster_kind, created) VALUES (?,'s',?,'[]','{}',?,'/tmp',NULL,NULL,NULL,1,'local',?)",
            (f"s/{i}", i, f"/tmp/s/{i}", i),
        )
        db.execute(
            "INSERT INTO attempts (run, attempt, token, job_id, state, updated) VALUES (?,1,'t',?,'COMPLETED',0)",
            (f"s/{i}", f"local-{i}"),
        )
    db.close()


def _backups(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".bak"))


@pytest.mark.parametrize(
    ("made_in", "opened_in"),
    [("local", "local"), ("network", "local"), ("local", "network"), ("network", "network")],
)
def test_a_store_from_a_newer_danlu_is_refused_and_left_as_it_is(tmp_path, monkeypatch, made_in, opened_in):
    """Whatever mode made the store and whatever mode opens it, its bytes and mtime stay the same."""
    env = _env(tmp_path, opened_in)
    path = _store_path(env)
    _newer_store(path, made_in, monkeypatch)
    before, stat = path.read_bytes(), path.stat()
    done = danlu("status", "--all", env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == (
        f"error: the run store {str(path)!r} was written by a newer danlu: "
        f"schema {NEWEST + 2} is newer than this danlu reads (up to schema {NEWEST})"
    )
    assert lines[1].startswith("hint: upgrade danlu")
    assert "DANLU_STORE" in lines[1]
    assert "corrupt" not in done.stderr
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in path.parent.iterdir()) == ["store.sqlite"]  # no journal, WAL or copy left


@pytest.mark.parametrize(
    "verb",
    [
        ["show", "s/0"],
        ["logs", "s/0"],
        ["cancel", "s", "--dry-run"],
        ["report", "s"],
        ["notify", "s", "--dry-run"],
        ["rerun", "s/0", "--dry-run"],
        ["submit", "experiment=tiny_ibq", "cluster=local", "args.max_train_steps=3"],
    ],
    ids=lambda verb: verb[0],
)
def test_every_verb_that_reads_the_store_refuses_a_newer_one(tmp_path, monkeypatch, verb):
    env = _env(tmp_path, "local")
    path = _store_path(env)
    _newer_store(path, "local", monkeypatch)
    before = path.read_bytes()
    done = danlu(*verb, env=env)
    assert done.returncode == 2, done.stderr
    assert "was written by a newer danlu" in done.stderr
    assert "hint: upgrade danlu" in done.stderr
    assert path.read_bytes() == before


@pytest.mark.parametrize("fs", ["local", "network"])
def test_an_older_store_is_copied_once_before_it_is_upgraded(tmp_path, fs):
    env = _env(tmp_path, fs)
    path = _store_path(env)
    _old_store(path, NEWEST - 1)
    done = danlu("status", "--all", "--json", env=env)
    assert done.returncode == 0, done.stderr
    backup = path.with_name(f"store.sqlite.v{NEWEST - 1}.bak")
    note = f"note: the run store was upgraded from schema {NEWEST - 1} to {NEWEST}; the old one is kept at {backup}"
    assert done.stderr.count(note) == 1, done.stderr
    assert done.stderr.count("note:") == 1

    copy = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("PRAGMA user_version").fetchone()[0] == NEWEST - 1
        assert copy.execute("SELECT run FROM runs ORDER BY run").fetchall() == [("s/0",), ("s/1",)]
        # the copy keeps the old schema: without the columns the newest migration adds
        assert "code" not in {r[1] for r in copy.execute("PRAGMA table_info(attempts)")}
    finally:
        copy.close()
    assert backup.stat().st_mode & 0o077 == 0  # the owner's only, as the store is

    store = Store(path)
    try:
        assert store.query("PRAGMA user_version")[0][0] == NEWEST
        assert [r["run"] for r in store.latest()] == ["s/0", "s/1"]
    finally:
        store.close()

    kept = backup.read_bytes(), backup.stat().st_mtime_ns
    again = danlu("status", "--all", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert "note:" not in again.stderr
    assert (backup.read_bytes(), backup.stat().st_mtime_ns) == kept
    assert _backups(path) == [backup.name]


def test_a_store_upgraded_again_from_the_same_schema_keeps_one_copy_the_latest(tmp_path, capsys):
    """Going back to the older danlu (its copy put back), adding a run there, then upgrading again: the copy of that
    schema is replaced by the store as the older danlu left it."""
    path = tmp_path / "store.sqlite"
    _old_store(path, NEWEST - 1)
    Store(path).close()
    backup = path.with_name(f"store.sqlite.v{NEWEST - 1}.bak")
    shutil.copyfile(backup, path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "INSERT INTO runs (run, sweep, idx, overrides, config, run_dir, workdir, git_commit, git_dirty, partition, "
        "nodes, cluster_kind, created) VALUES ('s/2','s',2,'[]','{}','/tmp/s/2','/tmp',NULL,NULL,NULL,1,'local',2)"
    )
    db.close()
    capsys.readouterr()
    Store(path).close()
    assert capsys.readouterr().err.count("note: the run store was upgraded") == 1
    assert _backups(path) == [backup.name]
    copy = sqlite3.connect(backup)
    try:
        assert copy.execute("SELECT count(*) FROM runs").fetchone()[0] == 3
        assert copy.execute("PRAGMA user_version").fetchone()[0] == NEWEST - 1
    finally:
        copy.close()


def test_each_old_schema_gets_a_copy_of_its_own(tmp_path, capsys):
    path = tmp_path / "store.sqlite"
    _old_store(path, 1)
    Store(path).close()
    assert f"upgraded from schema 1 to {NEWEST}" in capsys.readouterr().err
    assert _backups(path) == ["store.sqlite.v1.bak"]
    copy = sqlite3.connect(path.with_name("store.sqlite.v1.bak"))
    try:
        assert copy.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "final" not in {r[1] for r in copy.execute("PRAGMA table_info(attempts)")}
    finally:
        copy.close()


@pytest.mark.parametrize("fs", ["local", "network"])
def test_a_fresh_store_needs_no_copy(tmp_path, monkeypatch, capsys, fs):
    monkeypatch.setenv("DANLU_STORE_FS", fs)
    path = tmp_path / "store.sqlite"
    Store(path).close()
    Store(path).close()
    assert _backups(path) == []
    assert "note:" not in capsys.readouterr().err
