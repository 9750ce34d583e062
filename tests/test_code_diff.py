"""Reading frozen code back: the diff of two snapshots, a snapshot's uncommitted changes against its commit,
`danlu diff RUN_A RUN_B`, `danlu show RUN --diff`, and the report's mark for runs that trained other code than the
sweep's first run. No Slurm: snapshots are frozen from real git repositories here, and the runs are recorded in a
private store as finished local runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
from danlu_helpers import danlu_env, danlu_inprocess, local_run_row  # noqa: F401

from launcher.code.read import StoredSnapshot, code_diff, decoded, file_diffs, snapshot_of, uncommitted_diff
from launcher.code.snapshot import Limits, freeze_workdir
from launcher.layout import RunLayout
from launcher.views.report import RunReport, build, code_differs, render


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_repo(root: Path) -> Path:
    """A repository with one commit: text files, an executable, a binary file, a symlink."""
    root.mkdir(parents=True)
    git(root, "init", "-q")
    (root / "train.py").write_text("lr = 0.1\nprint(lr)\n")
    (root / "util.py").write_text("def f():\n    return 1\n")
    (root / "old.txt").write_text("old\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "data.bin").write_bytes(b"\x00\x01\x02")
    os.symlink("util.py", root / "link")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def frozen(runs_dir: Path, workdir: Path) -> StoredSnapshot:
    """Freeze `workdir` into the code store of `runs_dir` and read the snapshot back as a run's row would."""
    snap = freeze_workdir(runs_dir, workdir, Limits())
    found = snapshot_of({"code": snap.key, "run_dir": str(runs_dir / "sweep" / "0")})
    assert found is not None
    return found


def edit_everything(repo: Path) -> None:
    """One change of every kind: content, an untracked file, a removed file, the executable bit, a binary file's
    bytes and a symlink's target."""
    (repo / "train.py").write_text("lr = 0.2\nprint(lr)\n")
    (repo / "new.py").write_text("x = 1\n")
    (repo / "old.txt").unlink()
    (repo / "util.py").chmod(0o755)
    (repo / "data.bin").write_bytes(b"\x00\x01\x03")
    (repo / "link").unlink()
    os.symlink("train.py", repo / "link")


EVERY_EDIT = [
    "Binary files a/data.bin and b/data.bin differ",
    "--- a/link",
    "+++ b/link",
    "@@ -1 +1 @@",
    "-symbolic link to util.py",
    "+symbolic link to train.py",
    "--- /dev/null",
    "+++ b/new.py",
    "@@ -0,0 +1 @@",
    "+x = 1",
    "--- a/old.txt",
    "+++ /dev/null",
    "@@ -1 +0,0 @@",
    "-old",
    "--- a/train.py",
    "+++ b/train.py",
    "@@ -1,2 +1,2 @@",
    "-lr = 0.1",
    "+lr = 0.2",
    " print(lr)",
    "Mode of util.py changed: 100644 -> 100755",
]


def test_code_diff_lists_every_kind_of_change_sorted_by_path(tmp_path):
    repo = make_repo(tmp_path / "repo")
    before = frozen(tmp_path / "runs", repo)
    edit_everything(repo)
    after = frozen(tmp_path / "runs", repo)
    assert before.commit == after.commit and before.dirty is False and after.dirty is True
    assert code_diff(before, after) == EVERY_EDIT
    assert code_diff(before, before) == []
    statuses = {d.path: d.status for d in file_diffs(before, after)}
    assert statuses == {
        "data.bin": "changed",
        "link": "changed",
        "new.py": "added",
        "old.txt": "removed",
        "train.py": "changed",
        "util.py": "changed",
    }


def test_uncommitted_diff_compares_the_frozen_files_with_their_commit(tmp_path):
    repo = make_repo(tmp_path / "repo")
    clean = frozen(tmp_path / "runs", repo)
    edit_everything(repo)
    dirty = frozen(tmp_path / "runs", repo)
    assert uncommitted_diff(clean) == []
    assert uncommitted_diff(dirty) == EVERY_EDIT  # the clean snapshot was the commit itself


def test_uncommitted_diff_of_a_workdir_below_the_top_of_its_repository(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    (repo / "sub" / "model.py").write_text("layers = 2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "sub")
    (repo / "sub" / "model.py").write_text("layers = 3\n")
    (repo / "train.py").write_text("outside the workdir\n")
    snap = frozen(tmp_path / "runs", repo / "sub")
    assert snap.prefix == "sub/" and snap.changed == ("model.py",)
    assert uncommitted_diff(snap) == [
        "--- a/model.py",
        "+++ b/model.py",
        "@@ -1 +1 @@",
        "-layers = 2",
        "+layers = 3",
    ]


def test_a_commit_gone_from_the_repository_is_one_line_instead_of_a_diff(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("lr = 0.3\n")
    git(repo, "commit", "-q", "-am", "second")
    (repo / "util.py").write_text("edited\n")
    snap = frozen(tmp_path / "runs", repo)
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "-q", "--prune=now")
    lines = uncommitted_diff(snap)
    assert lines == [
        f"commit {snap.commit[:10]} is not in the repository at {repo} (any longer): no diff; the frozen files are "
        f"in {snap.tree}"
    ]


def test_outside_git_there_is_no_commit_to_compare_with(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text("x = 1\n")
    snap = frozen(tmp_path / "runs", plain)
    assert snap.commit is None and uncommitted_diff(snap) == []


def test_binary_content_is_a_nul_byte_or_text_that_is_not_utf8():
    assert decoded("grüße\n".encode()) == "grüße\n"
    assert decoded(b"a\x00b") is None
    assert decoded(b"\xff\xfe") is None


def test_a_run_without_code_or_with_its_manifest_gone_has_no_snapshot(tmp_path):
    assert snapshot_of({"code": None, "run_dir": str(tmp_path / "runs" / "s" / "0")}) is None
    assert snapshot_of({"code": "0" * 32, "run_dir": str(tmp_path / "runs" / "s" / "0")}) is None


# ---- the CLI, on runs recorded in a private store ------------------------------------------------------------------


def record_runs(env: Dict[str, str], sweep: str, runs: Sequence[Dict], workdir: Path) -> None:
    """A sweep of finished local runs: each {"config", "code", "environment"}; run i's dir is <runs_dir>/sweep/i."""
    from launcher.store import Store

    sweep_dir = Path(env["DANLU_RUNS_DIR"]) / sweep
    new = [local_run_row(sweep_dir, sweep, i, workdir, r["config"], code=r.get("code")) for i, r in enumerate(runs)]
    for r, spec in zip(new, runs, strict=True):
        restart = RunLayout(Path(r.run_dir)).attempt(1).restart(0)
        restart.root.mkdir(parents=True)
        if spec.get("environment") is not None:
            restart.environment.write_text(json.dumps(spec["environment"]))
    Path(env["DANLU_STORE"]).parent.mkdir(parents=True, exist_ok=True)
    store = Store(Path(env["DANLU_STORE"]))
    try:
        assert store.create_sweep(sweep, "tiny", "local", [], ["danlu"], str(sweep_dir), new)
        store.record_job("t:0", "local-1", False)
        store.update_attempts([{"run": r.run, "attempt": 1, "state": "COMPLETED", "final": True} for r in new])
    finally:
        store.close()


def environment(torch: str) -> Dict:
    return {"python": "3.11.9", "packages": {"torch": torch, "numpy": "2.1.0"}, "uv_lock": None}


@pytest.fixture
def two_runs(danlu_env, tmp_path) -> Dict[str, str]:
    """Run 0 trained the commit; run 1 an edit of train.py, another learning rate and another torch. Run 2 used its
    live workdir; run 3's snapshot is gone."""
    repo = make_repo(tmp_path / "repo")
    runs_dir = Path(danlu_env["DANLU_RUNS_DIR"])
    first = freeze_workdir(runs_dir, repo, Limits())
    (repo / "train.py").write_text("lr = 0.2\nprint(lr)\n")
    second = freeze_workdir(runs_dir, repo, Limits())
    record_runs(
        danlu_env,
        "sw",
        [
            {"config": {"args": {"learning_rate": 1e-05}}, "code": first.key, "environment": environment("2.12.0")},
            {"config": {"args": {"learning_rate": 0.0001}}, "code": second.key, "environment": environment("2.13.0")},
            {"config": {"args": {"learning_rate": 0.0001}}, "code": None, "environment": None},
            {"config": {"args": {"learning_rate": 0.0001}}, "code": "f" * 32, "environment": None},
        ],
        repo,
    )
    return dict(danlu_env, first=first.key, second=second.key, commit=str(first.commit))


TRAIN_EDIT = ["--- a/train.py", "+++ b/train.py", "@@ -1,2 +1,2 @@", "-lr = 0.1", "+lr = 0.2", " print(lr)"]


def cli(argv: List[str], env: Dict[str, str], monkeypatch, capsys, code: int = 0) -> subprocess.CompletedProcess:
    done = danlu_inprocess(argv, env, monkeypatch, capsys)
    assert done.returncode == code, done.stderr
    return done


def test_diff_prints_the_config_code_and_environment_that_differ(two_runs, monkeypatch, capsys):
    done = cli(["diff", "sw/0", "sw/1"], two_runs, monkeypatch, capsys)
    assert done.stdout.splitlines() == [
        "config",
        "  args.learning_rate: 1e-05 -> 0.0001",
        "code",
        f"  snapshot {two_runs['first'][:12]} -> {two_runs['second'][:12]}",
        *TRAIN_EDIT,
        "environment",
        "  torch: 2.12.0 -> 2.13.0",
    ]
    stat = cli(["diff", "sw/0", "sw/1", "--stat"], two_runs, monkeypatch, capsys)
    assert "  train.py | +1 -1" in stat.stdout.splitlines() and "@@" not in stat.stdout


def test_diff_json(two_runs, monkeypatch, capsys):
    data = json.loads(cli(["diff", "sw/0", "sw/1", "--json"], two_runs, monkeypatch, capsys).stdout)
    assert data["config"] == {"args.learning_rate": [1e-05, 0.0001]}
    assert data["code"] == {
        "a": two_runs["first"],
        "b": two_runs["second"],
        "files": {"train.py": "changed"},
        "diff": TRAIN_EDIT,
    }
    assert data["environment"] == {"torch": ["2.12.0", "2.13.0"]}
    assert data["not_recorded"] == []


def test_diff_of_a_run_with_itself_says_same_snapshot_and_nothing_else(two_runs, monkeypatch, capsys):
    done = cli(["diff", "sw/1", "sw/1"], two_runs, monkeypatch, capsys)
    assert done.stdout == f"code\n  same snapshot {two_runs['second'][:12]}\n"


def test_diff_names_runs_without_a_snapshot_or_an_environment(two_runs, monkeypatch, capsys):
    done = cli(["diff", "sw/2", "sw/3"], two_runs, monkeypatch, capsys)
    assert done.stdout.splitlines() == [
        "code",
        "  sw/2 ran its live workdir (code.freeze=false): no snapshot to compare",
        f"  sw/3: snapshot {'f' * 12} was removed by danlu gc",
        "environment",
        "  not recorded for sw/2",
        "  not recorded for sw/3",
    ]


def test_diff_of_a_run_that_does_not_exist_is_bad_input(two_runs, monkeypatch, capsys):
    done = cli(["diff", "sw/0", "sw/9"], two_runs, monkeypatch, capsys, code=2)
    assert "no run named 'sw/9'" in done.stderr and "hint:" in done.stderr
    done = cli(["diff", "sw", "sw/1"], two_runs, monkeypatch, capsys, code=2)
    assert "'sw' is a sweep, not a run" in done.stderr


def test_show_names_the_code_and_diff_prints_its_uncommitted_changes(two_runs, monkeypatch, capsys):
    done = cli(["show", "sw/1", "--diff"], two_runs, monkeypatch, capsys)
    lines = done.stdout.splitlines()
    assert (
        f"code       snapshot {two_runs['second'][:12]} · commit {two_runs['commit'][:10]} · 1 uncommitted file"
        in lines
    )
    heading = lines.index(
        f"uncommitted changes of snapshot {two_runs['second'][:12]} (a/: commit, b/: the frozen files)"
    )
    assert lines[heading + 1 :] == TRAIN_EDIT
    clean = cli(["show", "sw/0", "--diff"], two_runs, monkeypatch, capsys)
    assert f"code       snapshot {two_runs['first'][:12]} · commit {two_runs['commit'][:10]} · clean" in clean.stdout
    assert "uncommitted changes" not in clean.stdout and "no uncommitted diff" in clean.stderr


def test_show_says_when_a_run_used_its_live_workdir_or_its_snapshot_is_gone(two_runs, monkeypatch, capsys):
    live = cli(["show", "sw/2"], two_runs, monkeypatch, capsys)
    assert "code       the live workdir (code.freeze=false)" in live.stdout.splitlines()
    gone = cli(["show", "sw/3"], two_runs, monkeypatch, capsys)
    assert f"code       snapshot {'f' * 12} · removed by danlu gc" in gone.stdout.splitlines()


def test_show_json_has_the_code(two_runs, monkeypatch, capsys):
    data = json.loads(cli(["show", "sw/1", "--json", "--diff"], two_runs, monkeypatch, capsys).stdout)
    code = data["code"]
    assert code["snapshot"] == two_runs["second"] and code["commit"] == two_runs["commit"]
    assert code["dirty"] is True and code["changed"] == ["train.py"] and Path(code["tree"]).is_dir()
    assert data["uncommitted_diff"] == TRAIN_EDIT
    assert json.loads(cli(["show", "sw/2", "--json"], two_runs, monkeypatch, capsys).stdout)["code"] is None


# ---- the report's mark -----------------------------------------------------------------------------------------


def report_run(run: str, idx: int, code: Optional[str]) -> RunReport:
    return RunReport(run, "COMPLETED", {}, idx=idx, code=code)


def test_runs_that_trained_other_code_than_the_first_run_are_marked():
    runs = [report_run("s/2", 2, "b"), report_run("s/0", 0, "a"), report_run("s/1", 1, "a"), report_run("s/3", 3, None)]
    assert code_differs(runs) == ("s/0", {"s/2": True, "s/0": False, "s/1": False, "s/3": False})


def test_no_run_is_marked_when_the_first_run_has_no_code_key():
    runs = [report_run("s/0", 0, None), report_run("s/1", 1, "b")]
    assert code_differs(runs) == ("s/0", {"s/0": False, "s/1": False})
    assert code_differs([]) == (None, {})


def test_the_table_marks_the_run_name_and_explains_the_mark_once():
    report = build([report_run("s/0", 0, "a"), report_run("s/1", 1, "b")])
    assert [i["code_differs"] for i in report["runs"]] == [False, True]
    text = render(report, sparks=False).splitlines()
    assert any(line.split()[:1] == ["s/1*"] for line in text)
    assert not any("s/0*" in line for line in text)
    assert text[-1] == "* trained other code than s/0 (a rerun with --code current): compare with danlu diff"
    unmarked = render(build([report_run("s/0", 0, "a"), report_run("s/1", 1, "a")]), sparks=False)
    assert "trained other code" not in unmarked


def test_report_json_says_which_runs_trained_other_code(two_runs, monkeypatch, capsys):
    data = json.loads(cli(["report", "sw", "--json"], two_runs, monkeypatch, capsys).stdout)
    assert {r["run"]: r["code_differs"] for r in data["runs"]} == {
        "sw/0": False,
        "sw/1": True,
        "sw/2": False,
        "sw/3": True,
    }


def test_the_html_page_marks_the_run_name_and_explains_the_mark():
    from launcher.views.report_html import render_html

    page = render_html(build([report_run("s/0", 0, "a"), report_run("s/1", 1, "b")]), "s", "", {}, "now")
    assert '<td data-v="&quot;s/1&quot;">s/1*</td>' in page and ">s/0*<" not in page
    assert "<p>* trained other code than s/0 (a rerun with --code current): compare with danlu diff</p>" in page
