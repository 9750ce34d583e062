"""The store is one package: SQL is written in launcher/store/ alone, and the rows it reads carry their view."""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest
from danlu_helpers import REPO

from launcher.store import BRIEF, TABLE, NewRun, Store, reads, view_of

PKG = REPO / "launcher"
STORE = PKG / "store"
# what a query, or a connection of a module's own, looks like (case matters: "Select a run" in prose is no query)
SQL = (
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "DELETE FROM",
    ".execute(",
    ".executemany(",
    ".executescript(",
    "sqlite3.connect(",
)


def sql_lines(path: Path) -> List[str]:
    """`line: text` of every line of one module that holds SQL."""
    return [
        f"{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if any(s in line for s in SQL)
    ]


def test_sql_is_found_where_it_is_written(tmp_path):
    module = tmp_path / "x.py"
    module.write_text(
        'label = "Select a run"\n'
        'rows = db.execute("SELECT run FROM runs")\n'
        "db = sqlite3.connect(path)\n"
        'sql = "DELETE FROM runs WHERE run=?"\n'
    )
    assert sql_lines(module) == [
        '2: rows = db.execute("SELECT run FROM runs")',
        "3: db = sqlite3.connect(path)",
        '4: sql = "DELETE FROM runs WHERE run=?"',
    ]


def test_no_module_outside_the_store_package_holds_sql():
    found = [
        f"{path.relative_to(REPO)}:{line}"
        for path in sorted(PKG.rglob("*.py"))
        if STORE not in path.parents
        for line in sql_lines(path)
    ]
    assert len(list(STORE.glob("*.py"))) > 3
    assert found == [], "SQL outside launcher/store/ (give the store package a function for it):\n" + "\n".join(found)


def _run(i: int) -> NewRun:
    return NewRun(
        run=f"s/{i}",
        idx=i,
        overrides=[],
        config={},
        run_dir=f"/tmp/s/{i}",
        workdir="/tmp",
        git_commit=None,
        git_dirty=None,
        partition="debug",
        nodes=1,
        cluster_kind="slurm",
        script="",
        command="",
        tag="t:0",
    )


def test_rows_carry_the_view_they_were_read_in(tmp_path, monkeypatch):
    store = Store(tmp_path / "s.sqlite")
    assert store.create_sweep("s", "tiny", "testcluster", [], [], str(tmp_path / "s"), [_run(0), _run(1)])
    assert view_of(store.latest(view="table")) is TABLE
    assert view_of(store.latest(runs=["s/1"], view=BRIEF)) is BRIEF
    assert [r["run"] for r in store.latest_of_runs(["s/1"], TABLE)] == ["s/1"]
    monkeypatch.setattr(reads, "MANY_RUNS", 1)  # as many runs as that are read whole and kept here
    many = store.latest_of_runs(["s/1"], TABLE)
    assert view_of(many) is TABLE and [r["run"] for r in many] == ["s/1"]
    with pytest.raises(TypeError):
        view_of([dict(r) for r in store.latest()])  # rows of no view are never taken for a view's
    store.close()
