"""`danlu report` of runs whose program writes its metric files outside the run's output dir: a LightningCLI
config's logger folders (resolved against the run's workdir, as launcher/spec/lightning.output_folders names them)
and the folders given by `--metrics-dir`. No Slurm: the runs are recorded in a private store as finished, and their
files are written here by the writers the programs use (torch's SummaryWriter, a CSVLogger-shaped metrics.csv)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Tuple

from danlu_helpers import danlu_env, danlu_inprocess, local_run_row  # noqa: F401
from test_metrics_tensorboard import _write

TB_CONFIG = """
    trainer:
      max_steps: 8
      callbacks:
        - class_path: lightning.pytorch.callbacks.ModelCheckpoint
          init_args:
            dirpath: ../ckpt/tiny_ibq
      logger:
        class_path: lightning.pytorch.loggers.TensorBoardLogger
        init_args:
          save_dir: ../logs
          name: tiny_ibq
          version: tiny_ibq
    """

CSV_CONFIG = """
    trainer:
      logger:
        class_path: lightning.pytorch.loggers.CSVLogger
        init_args:
          save_dir: ../csv
          name: tiny
    """


def _workdir(root: Path, config: str) -> Path:
    """A program's workdir holding its LightningCLI config as cfg.yaml."""
    where = root / "code" / "prog"
    where.mkdir(parents=True)
    (where / "cfg.yaml").write_text(textwrap.dedent(config))
    return where


def _record(env: Dict[str, str], sweep: str, args: List[Dict[str, Any]], workdir: Path) -> List[Path]:
    """A sweep of one finished run per `args` in the private store (as `danlu submit` records them, then
    COMPLETED), each with its run dir; returns the run dirs."""
    from launcher.store import Store

    runs_dir = Path(env["DANLU_RUNS_DIR"]) / sweep
    runs = [
        local_run_row(
            runs_dir,
            sweep,
            i,
            workdir,
            {"args": a, "workdir": str(workdir), "launch": {"kind": "lightning"}},
            overrides=[f"args.seed={i}"],
            command="python train.py fit",
        )
        for i, a in enumerate(args)
    ]
    for r in runs:
        Path(r.run_dir).mkdir(parents=True)
    Path(env["DANLU_STORE"]).parent.mkdir(parents=True, exist_ok=True)
    store = Store(Path(env["DANLU_STORE"]))
    try:
        assert store.create_sweep(sweep, "tiny", "local", ["args.seed=..."], ["danlu"], str(runs_dir), runs)
        store.record_job("t:0", "local-1", False)
        store.update_attempts([{"run": r.run, "attempt": 1, "state": "COMPLETED", "final": True} for r in runs])
    finally:
        store.close()
    return [Path(r.run_dir) for r in runs]


def _report(argv: List[str], env: Dict[str, str], monkeypatch, capsys) -> Tuple[Dict[str, Any], str]:
    """`danlu report ARGV --json`: the report, and what it said on stderr."""
    done = danlu_inprocess(["report", *argv, "--json"], env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def test_tensorboard_logger_folders_of_the_config_are_read_and_each_run_ranks_by_its_own_loss(
    danlu_env, tmp_path, monkeypatch, capsys
):
    workdir = _workdir(tmp_path, TB_CONFIG)
    own = [{"config": ["cfg.yaml"], "trainer": {"logger": {"init_args": {"version": v}}}} for v in ("a", "b")]
    _record(danlu_env, "lit", own, workdir)
    logs = tmp_path / "code" / "logs" / "tiny_ibq"
    _write(logs / "a", {"train/loss": lambda s: 2.0 - s / 10}, 0, 8)  # best 1.3
    _write(logs / "b", {"train/loss": lambda s: 1.0 - s / 10}, 0, 8)  # best 0.3
    _write(tmp_path / "code" / "ckpt" / "tiny_ibq", {"train/loss": lambda s: -5.0}, 100, 102)  # not a log folder

    report, said = _report(["lit"], danlu_env, monkeypatch, capsys)
    runs = {r["run"]: r for r in report["runs"]}
    assert report["metric"] == "train/loss" and report["mode"] == "min"
    assert [runs[f"lit/{i}"]["series"]["train/loss"]["source"] for i in (0, 1)] == ["tensorboard"] * 2
    assert abs(runs["lit/0"]["best"] - 1.3) < 1e-6 and abs(runs["lit/1"]["best"] - 0.3) < 1e-6
    assert (
        runs["lit/0"]["series"]["train/loss"]["steps"]
        == list(range(8))
        == runs["lit/1"]["series"]["train/loss"]["steps"]
    )
    assert [r["run"] for r in report["runs"] if r["best_run"]] == ["lit/1"]
    assert said == ""


def test_a_csv_logger_without_a_version_is_read_from_each_starts_version_folder(
    danlu_env, tmp_path, monkeypatch, capsys
):
    workdir = _workdir(tmp_path, CSV_CONFIG)
    _record(danlu_env, "csv", [{"config": ["cfg.yaml"]}], workdir)
    versions = tmp_path / "code" / "csv" / "tiny"
    for n, (start, stop) in enumerate([(0, 6), (4, 10)]):  # the second start resumes at step 4
        (versions / f"version_{n}").mkdir(parents=True)
        rows = [f"{s},0,{10 * n + s}" for s in range(start, stop)]
        (versions / f"version_{n}" / "metrics.csv").write_text("step,epoch,val_loss\n" + "\n".join(rows) + "\n")

    (run,) = _report(["csv"], danlu_env, monkeypatch, capsys)[0]["runs"]
    series = run["series"]["val_loss"]
    assert series["source"] == "csv" and series["steps"] == list(range(10))
    assert series["values"] == [0, 1, 2, 3, 14, 15, 16, 17, 18, 19]  # a step trained again: the latest start's


def test_runs_without_metrics_are_named_once_with_where_report_looked_and_a_hint(
    danlu_env, tmp_path, monkeypatch, capsys
):
    workdir = _workdir(tmp_path, TB_CONFIG)
    run_dirs = _record(danlu_env, "none", [{"config": ["cfg.yaml"]}] * 3, workdir)
    (run_dirs[1] / "output").mkdir()
    (run_dirs[1] / "output" / "metrics.csv").write_text("step,loss\n1,0.5\n")  # a run with a metric: not named
    for argv in (["none"], ["none", "--json"]):
        done = danlu_inprocess(["report", *argv], danlu_env, monkeypatch, capsys)
        assert done.returncode == 0, done.stderr
        warning, hint = done.stderr.splitlines()
        assert warning.startswith("warning: no metrics found for 2 runs (none/0, none/2): looked in rank 0's log")
        logs = tmp_path / "code" / "logs" / "tiny_ibq" / "tiny_ibq"
        for folder in (run_dirs[0] / "output", run_dirs[2] / "output", logs):
            assert f"{folder} (no such folder)" in warning, warning
        assert str(run_dirs[1]) not in warning and "ckpt" not in warning
        assert hint.startswith("hint: ") and "--metrics-dir DIR" in hint
        assert "warning" not in done.stdout
        if "--json" in argv:
            assert [r["steps"] for r in json.loads(done.stdout)["runs"]] == [0, 1, 0]


def test_metrics_dir_finds_event_files_in_a_folder_only_it_names(danlu_env, tmp_path, monkeypatch, capsys):
    workdir = tmp_path / "code" / "plain"
    workdir.mkdir(parents=True)
    _record(danlu_env, "md", [{"seed": 0}], workdir)
    _write(tmp_path / "code" / "tb" / "run0", {"loss": lambda s: 3.0 - s / 4}, 0, 5)

    report, said = _report(["md"], danlu_env, monkeypatch, capsys)
    assert report["runs"][0]["series"] == {} and "no metrics found for 1 run (md/0)" in said

    report, said = _report(["md", "--metrics-dir", "../tb"], danlu_env, monkeypatch, capsys)
    (run,) = report["runs"]
    assert run["series"]["loss"]["source"] == "tensorboard" and run["series"]["loss"]["steps"] == [0, 1, 2, 3, 4]
    assert abs(run["best"] - 2.0) < 1e-6 and said == ""
