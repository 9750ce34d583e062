"""LightningCLI programs as upstream writes them: their world follows the job's resources, danlu knows the folders
their config makes them write into, and two runs that would write into one folder are refused before the queue.

The program is tests/programs/lightning_upstream, shaped like SEED-Voken's IBQ trainer (its own `src` package, a
config with `ckpt_path: null`, a ModelCheckpoint `dirpath: ../ckpt/<name>` and a TensorBoardLogger with
`save_dir: ../logs` and a fixed `version`); dry runs do not start it.
"""

from __future__ import annotations

import re
import sqlite3
import textwrap
from pathlib import Path

import pytest
import yaml
from danlu_helpers import REPO, danlu_env, danlu_inprocess  # noqa: F401
from test_bad_input import assert_one_line_error, guard  # noqa: F401

from launcher.spec.compose import Composer
from launcher.spec.lightning import Folder, output_folders, world_problem
from launcher.spec.validate import shape

PROGRAM = REPO / "tests" / "programs" / "lightning_upstream"
IBQ = ["experiment=ibq", f"workdir={PROGRAM}", "cluster=testcluster", "env=none"]
ONE_BY_TWO = ["resources.nodes=1", "resources.gpus_per_node=2"]
ON_4090S = ["resources.partition=debug-4090-01", "resources.gpu_type=null"]  # the test cluster's 2-node partition
SWEEP = ["-m", "+args.model.init_args.learning_rate=1e-4,2e-4"]
CKPT = str((REPO / "tests" / "programs" / "ckpt" / "tiny_ibq"))
LOGS = str((REPO / "tests" / "programs" / "logs" / "tiny_ibq" / "tiny_ibq"))


def _spec(overrides):
    (cfg,) = Composer().runs(overrides)
    return cfg.spec


def _write(where: Path, name: str, text: str) -> str:
    where.mkdir(parents=True, exist_ok=True)
    (where / name).write_text(textwrap.dedent(text))
    return name


UPSTREAM_SHAPED = """
    ckpt_path: null
    trainer:
      devices: 8
      num_nodes: 8
      callbacks:
        - class_path: lightning.pytorch.callbacks.ModelCheckpoint
          init_args:
            dirpath: ../ckpt/ibq_1024
            save_last: true
            monitor: train/perceptual_loss
        - class_path: lightning.pytorch.callbacks.LearningRateMonitor
      logger:
        class_path: lightning.pytorch.loggers.TensorBoardLogger
        init_args:
          save_dir: ../logs
          version: ibq_1024
    """


# ---- where a LightningCLI run writes (launcher/spec/lightning.output_folders) ---------------------------------------


def test_upstream_shaped_config_names_its_checkpoint_and_log_folders_resolved_against_the_workdir(tmp_path):
    repo = tmp_path / "SEED-Voken"
    name = _write(repo / "configs", "ibq.yaml", UPSTREAM_SHAPED)
    found = output_folders({"config": [f"configs/{name}"]}, str(repo))
    assert [(f.path, f.what, f.versioned) for f in found] == [
        (str(tmp_path / "ckpt" / "ibq_1024"), "ModelCheckpoint dirpath", False),
        (str(tmp_path / "logs" / "lightning_logs" / "ibq_1024"), "TensorBoardLogger save_dir/name/version", False),
    ]
    # the checkpoint callback is not the last one: no command-line key reaches it (jsonargparse sets the last's)
    assert found[0].key is None and found[1].key == "args.trainer.logger.init_args.version"


def test_a_folder_named_through_a_symlink_is_the_folder_it_points_to(tmp_path):
    repo = tmp_path / "SEED-Voken"
    name = _write(repo / "configs", "ibq.yaml", UPSTREAM_SHAPED)
    (tmp_path / "scratch").mkdir()
    (tmp_path / "ckpt").symlink_to(tmp_path / "scratch")  # ../ckpt is a link to the scratch disk
    found = output_folders({"config": [f"configs/{name}"]}, str(repo))
    assert found[0].path == str(tmp_path / "scratch" / "ibq_1024")


def test_later_config_files_and_args_win_as_lightningcli_merges_them(tmp_path):
    base = _write(tmp_path, "base.yaml", UPSTREAM_SHAPED)
    run = _write(
        tmp_path,
        "run.yaml",
        """
        trainer:
          callbacks:
            - class_path: ModelCheckpoint
              init_args: {dirpath: ckpt/run}
          logger:
            init_args: {name: tb}
        """,
    )
    args = {
        "config": [base, run],
        "trainer": {"callbacks": {"init_args": {"save_top_k": 3}}, "logger": {"version": 7}},
        "trainer.default_root_dir": "~/roots/r1",
    }
    found = {f.what: f for f in output_folders(args, str(tmp_path))}
    # the later file's callbacks list replaces the earlier one; its logger mapping merges into the earlier one
    assert found["ModelCheckpoint dirpath"].path == str(tmp_path / "ckpt" / "run")
    assert found["ModelCheckpoint dirpath"].key == "args.trainer.callbacks.init_args.dirpath"
    assert found["TensorBoardLogger save_dir/name/version"].path == str(tmp_path.parent / "logs" / "tb" / "version_7")
    assert found["trainer.default_root_dir"].path == str(Path("~/roots/r1").expanduser())
    # args into a list set its last item's init_args, as jsonargparse does
    args = {"config": [base], "trainer": {"callbacks": {"init_args": {"dirpath": "/abs/ckpt"}}}}
    assert [f.path for f in output_folders(args, str(tmp_path)) if f.what == "ModelCheckpoint dirpath"] == [
        str(tmp_path.parent / "ckpt" / "ibq_1024")
    ]  # the last callback here is the LearningRateMonitor: Lightning would refuse the flag; the folder stays


def test_loggers_without_a_version_write_a_new_folder_per_start(tmp_path):
    cfg = _write(
        tmp_path,
        "c.yaml",
        """
        trainer:
          logger:
            - class_path: lightning.pytorch.loggers.CSVLogger
              init_args: {save_dir: csv, name: null}
            - class_path: lightning.pytorch.loggers.TensorBoardLogger
              init_args: {save_dir: tb, name: exp, version: ""}
            - class_path: lightning.pytorch.loggers.WandbLogger
              init_args: {save_dir: wandb}
        """,
    )
    found = output_folders({"config": cfg}, str(tmp_path))
    assert [(f.path, f.versioned) for f in found] == [(str(tmp_path / "csv"), True), (str(tmp_path / "tb/exp"), True)]


def test_a_program_without_a_lightning_config_writes_nowhere_danlu_could_name(tmp_path):
    assert output_folders({"learning_rate": 1e-3, "output_dir": "out"}, str(tmp_path)) == []
    assert output_folders({"config": "missing.yaml"}, str(tmp_path)) == []
    assert output_folders({"config": _write(tmp_path, "m.yaml", "model: {lr: 1}\n")}, str(tmp_path)) == []
    assert isinstance(output_folders({"trainer": {"default_root_dir": "r"}}, str(tmp_path))[0], Folder)


# ---- the job's world from resources ------------------------------------------------------------------------------


@pytest.mark.parametrize("experiment", ["ibq", "tiny_lightning"])
def test_lightning_experiments_take_devices_and_num_nodes_from_resources(experiment):
    for extra, world in (
        (ONE_BY_TWO, (2, 1)),
        ([*ON_4090S, "resources.nodes=2", "resources.gpus_per_node=4"], (4, 2)),
        (["resources.nodes=1", "resources.gpus_per_node=0", "launch.tasks_per_node=3"], (3, 1)),
    ):
        spec = _spec(["cluster=testcluster", f"experiment={experiment}", *extra])
        sh = shape(spec)
        trainer = spec.args["trainer"]
        assert (trainer["devices"], trainer["num_nodes"]) == (sh.tasks_per_node, sh.nodes) == world
        assert world_problem(spec, sh.nodes, sh.tasks_per_node) is None


def test_vqgan_gpus_follow_the_nodes_gpus():
    assert _spec(["cluster=example", "experiment=vqgan"]).args["gpus"] == "0,1,2,3,"
    assert _spec(["cluster=example", "experiment=vqgan", "resources.gpus_per_node=1"]).args["gpus"] == "0,"


def test_ibq_on_one_node_of_two_gpus_passes_the_check_without_trainer_args(guard, danlu_env, monkeypatch, capsys):
    done = danlu_inprocess(["submit", *IBQ, *ONE_BY_TWO, "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    assert "--trainer.devices=2 --trainer.num_nodes=1" in done.stdout
    guard()


def test_an_explicit_trainer_value_wins_and_a_mismatch_is_still_refused(guard, danlu_env, monkeypatch, capsys):
    done = danlu_inprocess(
        ["submit", *IBQ, *ONE_BY_TWO, "args.trainer.devices=4", "--dry-run"], danlu_env, monkeypatch, capsys
    )
    err = assert_one_line_error(done)
    assert "trainer.devices=4 (args)" in err and "1 node x 2 tasks" in err, err
    done = danlu_inprocess(
        [
            "submit",
            *IBQ,
            *ON_4090S,
            "resources.nodes=2",
            "resources.gpus_per_node=2",
            "args.trainer.num_nodes=2",
            "--dry-run",
        ],
        danlu_env,
        monkeypatch,
        capsys,
    )
    assert done.returncode == 0 and "--trainer.devices=2 --trainer.num_nodes=2" in done.stdout, done.stderr
    guard()


# ---- no two runs write into one folder unless asked --------------------------------------------------------------


def test_each_run_of_a_sweep_gets_its_own_folders_through_an_extra_config(guard, danlu_env, monkeypatch, capsys):
    done = danlu_inprocess(["submit", *IBQ, *ONE_BY_TWO, *SWEEP, "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0 and "warning:" not in done.stderr, done.stderr
    commands = [ln for ln in done.stdout.splitlines() if "DANLU_COMMAND=" in ln]
    extras = [re.search(r"--config=(\S+\.lightning\.yaml)", c).group(1) for c in commands]
    assert len(set(extras)) == 2 and all(
        c.index("/configs/IBQ/") < c.index(e) for c, e in zip(commands, extras, strict=True)
    )
    # the program's own --config is the frozen copy of the workdir's file
    assert all(re.search(r"--config=\S+/\.danlu-code/trees/\w+/configs/IBQ/", c) for c in commands), commands
    shown = done.stdout.split("# ==== the extra --config of run ", 1)[1]
    config = yaml.safe_load(shown.split("\n", 1)[1])["trainer"]
    output = Path(extras[0]).parent.parent / "0" / "output"
    assert config["callbacks"][1]["init_args"]["dirpath"] == str(output / "ckpt" / "tiny_ibq")
    assert config["logger"]["init_args"]["save_dir"] == str(output / "logs")
    assert config["callbacks"][0]["class_path"] == "danlu_lightning.KeepProgress"
    guard()


def test_a_sweep_sharing_the_configs_checkpoint_folder_is_refused_before_the_queue(
    guard, danlu_env, monkeypatch, capsys
):
    for extra in (["--dry-run"], []):
        done = danlu_inprocess(
            ["submit", *IBQ, *ONE_BY_TWO, *SWEEP, "own_folders=false", *extra], danlu_env, monkeypatch, capsys
        )
        err = assert_one_line_error(done)
        assert err == f"error: runs 0 and 1 of this sweep would write into one folder: {CKPT} (ModelCheckpoint dirpath)"
        hint = next(ln for ln in done.stderr.splitlines() if ln.startswith("hint: "))
        assert "++args.trainer.callbacks.init_args.dirpath=" in hint and "--reuse-output" in hint, hint
        assert "++args.trainer.logger.init_args.version=" in hint, hint  # the log folder is shared as well
    guard()


def test_reuse_output_shares_the_folders_on_purpose_and_says_so(guard, danlu_env, monkeypatch, capsys):
    done = danlu_inprocess(
        ["submit", *IBQ, *ONE_BY_TWO, *SWEEP, "--reuse-output", "--dry-run"], danlu_env, monkeypatch, capsys
    )
    assert done.returncode == 0, done.stderr
    warnings = [ln for ln in done.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 2 and CKPT in warnings[0] and LOGS in warnings[1], done.stderr
    assert all("--reuse-output" in w for w in warnings) and "error:" not in done.stderr
    # the extra config keeps the config's folders; danlu's callback still keeps each run's progress
    shown = done.stdout.split("# ==== the extra --config of run ", 1)[1]
    config = yaml.safe_load(shown.split("\n", 1)[1])["trainer"]
    assert "logger" not in config and "default_root_dir" not in config, config
    assert config["callbacks"][1]["init_args"]["dirpath"] == "../ckpt/tiny_ibq"
    assert config["callbacks"][0]["init_args"]["checkpoint"].endswith("/0/stop.ckpt")
    guard()


def test_runs_given_their_own_folders_pass(guard, danlu_env, monkeypatch, capsys):
    own = [
        "++args.trainer.callbacks.init_args.dirpath=../ckpt/lr${args.model.init_args.learning_rate}",
        "++args.trainer.logger.init_args.version=lr${args.model.init_args.learning_rate}",
    ]
    done = danlu_inprocess(["submit", *IBQ, *ONE_BY_TWO, *SWEEP, *own, "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    assert "--trainer.callbacks.init_args.dirpath=../ckpt/lr0.0002" in done.stdout
    assert "warning:" not in done.stderr
    guard()


def _queued_run(store_path: Path, overrides) -> str:
    """A run of the store, as a submit leaves it once Slurm took its job (PENDING, not final)."""
    from launcher.store import NewRun, Store

    (cfg,) = Composer().runs(overrides)
    store = Store(store_path)
    try:
        run = NewRun(
            run="ibq-queued/0",
            idx=0,
            overrides=list(overrides),
            config=cfg.resolved,
            run_dir=str(store_path.parent / "runs" / "ibq-queued" / "0"),
            workdir=str(PROGRAM),
            git_commit=None,
            git_dirty=None,
            partition="debug-4090-01",
            nodes=1,
            cluster_kind="slurm",
            script="#!/bin/bash\n",
            command="python main.py fit",
            tag="tok:0",
        )
        assert store.create_sweep("ibq-queued", "ibq", "testcluster", overrides, ["danlu"], "/runs/ibq-queued", [run])
        store.record_job("tok:0", "4242", array=False)
    finally:
        store.close()
    return run.run


def test_a_folder_a_queued_run_writes_into_is_refused_until_that_run_ends(danlu_env, monkeypatch, capsys):
    store_path = Path(danlu_env["DANLU_STORE"])
    store_path.parent.mkdir(parents=True)
    shared = [*IBQ, *ONE_BY_TWO, "own_folders=false"]
    owner = _queued_run(store_path, shared)
    for extra in (["--dry-run"], ["--reuse-output", "--dry-run"]):
        done = danlu_inprocess(["submit", *shared, *extra], danlu_env, monkeypatch, capsys)
        if "--reuse-output" in extra:
            assert done.returncode == 0 and f"warning: run {owner} (still queued or running)" in done.stderr
            continue
        err = assert_one_line_error(done)
        assert err == (
            f"error: run {owner} (still queued or running) writes into {CKPT} (ModelCheckpoint dirpath); "
            "run 0 of this sweep would too"
        ), err
    # a run of its own folders passes while the other is queued
    own = ["++args.trainer.callbacks.init_args.dirpath=../ckpt/b", "++args.trainer.logger.init_args.version=b"]
    done = danlu_inprocess(["submit", *shared, *own, "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    # and so does a run given folders below its own output dir, as by default
    done = danlu_inprocess(["submit", *IBQ, *ONE_BY_TWO, "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    # once the queued run has ended, its folders are no longer in use
    db = sqlite3.connect(store_path)
    with db:
        db.execute("UPDATE attempts SET state='COMPLETED', final=1 WHERE run=?", (owner,))
    db.close()
    done = danlu_inprocess(["submit", *shared, "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr


# ---- progress kept: where a start resumes ----------------------------------------------------------------------------


def test_a_start_resumes_from_the_newest_of_the_stop_checkpoint_and_the_programs_last(tmp_path):
    import json
    import os

    from launcher.job.resume import newest_checkpoint, resume_dirs

    stop, ckpt = tmp_path / "stop.ckpt", tmp_path / "ckpt"
    ckpt.mkdir()
    assert newest_checkpoint(stop, [str(ckpt)]) is None  # nothing yet: step 0
    (ckpt / "epoch=0-step=20.ckpt").write_text("x")  # not a last*.ckpt: never a resume point of its own
    (ckpt / "last.ckpt").write_text("x")
    os.utime(ckpt / "last.ckpt", (100, 100))
    assert newest_checkpoint(stop, [str(ckpt)])["path"] == str(ckpt / "last.ckpt")
    stop.write_text("x")
    Path(f"{stop}.json").write_text(json.dumps({"step": 57}))
    os.utime(stop, (200, 200))
    found = newest_checkpoint(stop, [str(ckpt)])
    assert (found["path"], found["step"], found["what"]) == (str(stop), 57, "danlu's stop checkpoint")
    (ckpt / "last-v1.ckpt").write_text("x")  # the program saved again after the resume: newer
    os.utime(ckpt / "last-v1.ckpt", (300, 300))
    assert newest_checkpoint(stop, [str(ckpt)])["path"] == str(ckpt / "last-v1.ckpt")
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        yaml.safe_dump({"trainer": {"callbacks": [{"class_path": "x", "init_args": {"resume_dirs": [str(ckpt)]}}]}})
    )
    assert resume_dirs(extra) == [str(ckpt)] and resume_dirs(tmp_path / "missing.yaml") == []


def test_a_program_whose_progress_nothing_keeps_is_named_in_the_dry_run(guard, danlu_env, monkeypatch, capsys):
    lost = ["experiment=tiny_dpo", "cluster=testcluster", "output_arg=null"]
    done = danlu_inprocess(["submit", *lost, "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0 and "progress not kept: train.py" in done.stderr, done.stderr
    for kept in (["experiment=tiny_dpo", "cluster=testcluster"], [*IBQ, *ONE_BY_TWO], lost + ["requeue.enabled=false"]):
        done = danlu_inprocess(["submit", *kept, "--dry-run"], danlu_env, monkeypatch, capsys)
        assert done.returncode == 0 and "progress not kept" not in done.stderr, done.stderr
    guard()


def test_the_reason_of_a_run_requeued_from_step_0_says_so():
    from launcher.node_agent import FROM_ZERO
    from launcher.state.reasons import classify

    lines = [
        f"[danlu agent] {FROM_ZERO}: ...",
        "[danlu agent] not requeued: 2 requeues already (requeue.max_requeues=2)",
    ]
    reason = classify("FAILED", "1:0", "node1", lines)
    assert reason == (
        "stopped at the time limit after 2 requeues (requeue.max_requeues=2); each start began at step 0 "
        "(no checkpoint danlu knows of)"
    )
    assert "step 0" not in classify("FAILED", "1:0", "node1", lines[1:])


def test_booleans_reach_a_lightningcli_program_spelled_out(guard, danlu_env, monkeypatch, capsys):
    flags = ["+args.trainer.enable_progress_bar=false", "+args.model.init_args.print_steps=true"]
    done = danlu_inprocess(["submit", *IBQ, *ONE_BY_TWO, *flags, "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    assert "--trainer.enable_progress_bar=false --model.init_args.print_steps=true" in done.stdout, done.stdout
    guard()
