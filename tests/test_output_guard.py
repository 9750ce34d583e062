"""A new run may not take another run's output dir, however the path to it is spelled: relative to the run's workdir,
through a symlink, or with characters beyond ASCII. Local runs (no Slurm) made through `danlu submit`, real files
and symlinks, and a store from before the store recorded each run's output dir."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from danlu_helpers import REPO, danlu

from launcher.layout import SweepLayout
from launcher.store import MIGRATIONS, Store

FIN = ["experiment=tiny_ibq", "cluster=local", "args.max_train_steps=3"]
WIDE = "数据"  # a folder name JSON stores as \\u escapes


def quoted(path: Path) -> str:
    """A path as a Hydra override value: quoted, as beyond ASCII it must be."""
    return f"'{path}'"


@pytest.fixture(scope="module")
def owners(tmp_path_factory):
    """One store with three COMPLETED local runs: rel/0 writes args.output_dir=ckpt (relative to its workdir), wide/0
    a folder named in Chinese, own/0 the output dir danlu gives it."""
    home = tmp_path_factory.mktemp("guard")
    workdir = home / "w"
    shutil.copytree(REPO / "examples" / "tiny_ibq", workdir, ignore=shutil.ignore_patterns("__pycache__"))
    env = {
        "DANLU_HOME": str(home / "h"),
        "DANLU_RUNS_DIR": str(home / "runs"),
        "DANLU_STORE": str(home / "h" / "store.sqlite"),
        "NO_COLOR": "1",
    }
    for name, extra in (
        ("rel", [f"workdir={workdir}", "args.output_dir=ckpt"]),
        ("wide", [f"args.output_dir={quoted(home / 'x' / WIDE)}"]),
        ("own", []),
    ):
        done = danlu("submit", *FIN, *extra, "--name", name, "--wait", env=env)
        assert done.returncode == 0, done.stderr
    assert (workdir / "ckpt").is_dir() and (home / "x" / WIDE).is_dir()
    return SimpleNamespace(env=env, home=home, workdir=workdir)


def _refused(owners, owner, *overrides, cwd=None):
    """A submit naming the output dir `owner` writes is refused with exit 2, and so is its dry run; --reuse-output
    allows the dry run."""
    for extra in ([], ["--dry-run"]):
        done = danlu("submit", *FIN, *overrides, *extra, env=owners.env, cwd=cwd)
        assert done.returncode == 2, (overrides, extra, done.stderr)
        assert f"belongs to run {owner}" in done.stderr, done.stderr
        assert f"danlu rerun {owner} --continue" in done.stderr and "--reuse-output" in done.stderr, done.stderr
    done = danlu("submit", *FIN, *overrides, "--reuse-output", "--dry-run", env=owners.env, cwd=cwd)
    assert done.returncode == 0, done.stderr


def test_the_same_relative_output_dir_in_a_second_submit_is_refused(owners, tmp_path):
    workdir = owners.workdir
    _refused(owners, "rel/0", f"workdir={workdir}", "args.output_dir=ckpt")
    _refused(owners, "rel/0", f"workdir={workdir}", "args.output_dir=./ckpt/", cwd=tmp_path)
    _refused(owners, "rel/0", f"workdir={workdir}", f"args.output_dir={workdir / 'ckpt'}", cwd=tmp_path)
    # the workdir itself relative to the current directory
    _refused(owners, "rel/0", "workdir=w", "args.output_dir=ckpt", cwd=owners.home)
    _refused(owners, "rel/0", "workdir=.", "args.output_dir=sub/../ckpt", cwd=workdir)


def test_a_symlink_to_another_runs_output_dir_is_refused(owners, tmp_path):
    home, workdir = owners.home, owners.workdir
    (tmp_path / "to_ckpt").symlink_to(workdir / "ckpt")
    _refused(owners, "rel/0", f"args.output_dir={tmp_path / 'to_ckpt'}")
    # a symlink to the folder another run's args.output_dir names a path in
    (tmp_path / "to_workdir").symlink_to(workdir)
    _refused(owners, "rel/0", f"args.output_dir={tmp_path / 'to_workdir' / 'ckpt'}")
    _refused(owners, "rel/0", f"workdir={tmp_path / 'to_workdir'}", "args.output_dir=ckpt")
    # the output dir danlu gave a run, and a folder inside it
    owned = SweepLayout(home / "runs" / "own").run(0).output_dir
    (tmp_path / "to_owned").symlink_to(owned)
    _refused(owners, "own/0", f"args.output_dir={tmp_path / 'to_owned'}")
    _refused(owners, "own/0", f"args.output_dir={tmp_path / 'to_owned' / 'later'}")
    (tmp_path / "to_runs").symlink_to(home / "runs")
    _refused(owners, "own/0", f"args.output_dir={tmp_path / 'to_runs' / 'own' / '0' / 'output'}")


def test_an_output_dir_named_beyond_ascii_is_refused(owners, tmp_path):
    home = owners.home
    _refused(owners, "wide/0", f"args.output_dir={quoted(home / 'x' / WIDE)}")
    (tmp_path / "链接").symlink_to(home / "x")
    _refused(owners, "wide/0", f"args.output_dir={quoted(tmp_path / '链接' / WIDE)}")


def test_refused_submits_record_nothing(owners):
    stored = json.loads(danlu("status", "--all", "--json", env=owners.env).stdout)
    assert sorted(i["run"] for i in stored) == ["own/0", "rel/0", "wide/0"]


def test_a_store_from_before_output_dirs_were_recorded_finds_them_after_migrating(tmp_path):
    """Runs written by an older danlu (schema 4: no output_dir column) are found by the real path of the output dir
    their config names, relative to their workdir, or the one danlu gave them."""
    workdir = tmp_path / "w"
    (workdir / "ckpt").mkdir(parents=True)
    (tmp_path / "x" / WIDE).mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "x")
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:4]:
        db.executescript(script)
    db.execute("PRAGMA user_version=4")
    db.execute(
        "INSERT INTO sweeps (sweep, experiment, cluster, created, overrides, argv, sweep_dir) "
        "VALUES ('s','tiny_ibq','local',0,'[]','[]',?)",
        (str(tmp_path / "runs" / "s"),),
    )
    values = {0: "ckpt", 1: f"{tmp_path / 'link' / WIDE}", 2: None, 3: "~/x"}
    for i, value in values.items():
        config = {"output_arg": "output_dir", "args": {"output_dir": value, "seed": i}, "workdir": str(workdir)}
        db.execute(
            "INSERT INTO runs VALUES (?,'s',?,'[]',?,?,?,NULL,NULL,NULL,1,'local',?)",
            (f"s/{i}", i, json.dumps(config), str(tmp_path / "runs" / "s" / str(i)), str(workdir), i),
        )
    db.close()
    store = Store(path)
    try:
        assert store.query("PRAGMA user_version")[0][0] == len(MIGRATIONS)
        assert store.output_owner(str(workdir / "ckpt")) == "s/0"
        assert store.output_owner(str(tmp_path / "x" / WIDE)) == "s/1"
        assert store.output_owner(str(tmp_path / "runs" / "s" / "2" / "output")) == "s/2"
        assert store.output_owner(str(tmp_path / "runs" / "s" / "2" / "output" / "inner")) == "s/2"
        assert store.output_owner(str(Path("~/x").expanduser())) == "s/3"
        assert store.output_owner(str(workdir)) is None
        assert store.output_owner(str(tmp_path / "runs" / "s" / "0" / "output")) is None  # s/0 names its own
    finally:
        store.close()
