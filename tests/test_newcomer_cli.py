"""What a newcomer meets first: `options` of an experiment, a short `show`, squeue's job names in `status`, messages
that count right, errors that name the bad word and the verb's own --help, and the same flag meaning the same
thing on every verb (`rerun --wait` as `submit --wait`). Local runs (cluster=local) and dry runs: no Slurm needed."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from danlu_helpers import REPO, danlu, danlu_env, danlu_inprocess, private_env, submit_local, wait_status  # noqa: F401

TINY = ["experiment=tiny_dpo", "cluster=local", "args.max_train_steps=3", "args.pretrain_steps=5"]


def rows_of(stdout: str) -> dict:
    """`danlu options` lines by their key."""
    return {ln.split()[0]: ln.split(None, 3) for ln in stdout.splitlines() if ln and not ln.startswith("#")}


# ---- danlu options ------------------------------------------------------------------------------------------
def test_options_of_an_experiment_shows_what_the_experiment_sets(danlu_env, monkeypatch, capsys):
    done = danlu_inprocess(["options", "experiment=tiny_dpo"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    rows = rows_of(done.stdout)
    assert rows["resources.time"][1] == "'00:15:00'"  # tiny_dpo's, not RunSpec's 01:00:00
    key, value, kind, help_text = rows["resources.time"]
    assert kind == "str" and help_text.startswith("time limit")
    base = danlu_inprocess(["options"], danlu_env, monkeypatch, capsys)
    assert base.returncode == 0, base.stderr
    assert rows_of(base.stdout)["resources.time"][1:3] == ["'01:00:00'", "str"]  # no overrides: the defaults
    assert rows["experiment"][1] == "'tiny_dpo'" and rows["resources.cpus_per_task"][2] == "int|null"
    js = json.loads(
        danlu_inprocess(["options", "experiment=tiny_dpo", "--json"], danlu_env, monkeypatch, capsys).stdout
    )
    time_row = next(o for o in js["options"] if o["key"] == "resources.time")
    assert time_row["value"] == "'00:15:00'" and time_row["default"] == "'01:00:00'" and time_row["type"] == "str"


def test_the_port_option_says_how_the_job_picks_its_port(danlu_env, monkeypatch, capsys):
    from launcher.job import port

    line = next(
        ln
        for ln in danlu_inprocess(["options"], danlu_env, monkeypatch, capsys).stdout.splitlines()
        if ln.startswith("launch.port ")
    )
    assert "job id" not in line  # the port is never derived from the job id
    assert "free" in line and "head node" in line and f"{port.LOW}-{port.HIGH - 1}" in line, line


# ---- one local run, failed, rerun with an override, then continued ------------------------------------------
@pytest.fixture(scope="module")
def reran(tmp_path_factory):
    """A local tiny_dpo run that crashed at step 2, rerun with args.crash_at_step=-1 (completed)."""
    env = private_env(tmp_path_factory.mktemp("newcomer"))
    failed = danlu("submit", *TINY, "args.crash_at_step=2", "--name", "nc", "--wait", env=env)
    assert failed.returncode == 1, failed.stderr
    done = danlu("rerun", "nc/0", "args.crash_at_step=-1", env=env)
    assert done.returncode == 0, done.stderr
    (item,) = wait_status("nc/0", env, timeout=240, poll=1)
    assert item["state"] == "COMPLETED", item
    return env


def test_show_after_a_rerun_with_an_override_agrees_with_its_command(reran):
    shown = json.loads(danlu("show", "nc/0", "--json", env=reran, check=True).stdout)
    assert "--crash_at_step=-1" in shown["command"]
    assert shown["config"]["args"]["crash_at_step"] == -1, shown["config"]["args"]
    assert "args.crash_at_step=-1" in shown["overrides"] and "args.crash_at_step=2" not in shown["overrides"]
    text = danlu("show", "nc/0", env=reran, check=True).stdout
    assert re.search(r"^  args\.crash_at_step: +-1$", text, re.M), text


def test_show_leads_with_what_a_researcher_reads_first(reran):
    text = danlu("show", "nc/0", env=reran, check=True).stdout
    lines = text.splitlines()
    assert len(lines) <= 30, text
    assert lines[0].startswith("run        nc/0") and lines[1].startswith("state      COMPLETED")
    assert "RuntimeError: injected crash at step 2 on rank 0" in text  # why attempt 1 ended
    assert "rerun with args.crash_at_step=-1" in text
    for head in ("attempts", "command    accelerate launch", "config", "git", "paths"):
        assert any(ln.startswith(head) for ln in lines), head
    run_dir = Path(reran["DANLU_RUNS_DIR"]) / "nc" / "0"
    assert f"  logs       {run_dir}/logs/attempt-" in text and f"  output     {run_dir}/output" in text
    assert "#SBATCH" not in text and "DANLU_COMMAND=" not in text and "gres_with_type" not in text
    full = danlu("show", "nc/0", "--full", env=reran, check=True).stdout
    assert full.startswith(text.rstrip("\n")) or full.splitlines()[0] == lines[0]
    assert "gres_with_type:" in full and "DANLU_COMMAND=" in full  # the cluster profile and the script, at the end
    assert full.index("paths") < full.index("gres_with_type:")


def test_show_of_a_sweep_names_its_runs(reran):
    done = danlu("show", "nc", env=reran)
    assert done.returncode == 2
    err = done.stderr.splitlines()
    assert err[0].startswith("error: ") and "sweep" in err[0] and err[1].startswith("hint: ")
    assert "danlu show nc/0" in err[1], done.stderr


def test_status_names_jobs_as_squeue_does(reran):
    from launcher.views.table import render_plain

    table = danlu("status", "--all", env=reran, check=True).stdout.splitlines()
    head = table[1].split()
    assert head[3] == "NAME" and table[2].split()[3] == "nc/0"  # a job of one run is named by its run id
    items = [
        {"run": f"tiny_lightning-3f2a/{i}", "sweep": "tiny_lightning-3f2a", "job_id": f"77_{i}", "state": "RUNNING",
         "elapsed": 5, "nodes": 1, "attempt": 1, "reason": "", "nodelist": "node1", "partition": "debug-4090-01",
         "final": False, "name": "tiny_lightning"}
        for i in range(2)
    ]  # fmt: skip
    lines = render_plain(items).splitlines()
    assert [ln.split()[3] for ln in lines[2:]] == ["tiny_lightning-3f2a"] * 2  # an array: its sweep, uncut


def test_rerun_waits_like_submit_and_exits_by_the_runs_outcome(reran):
    done = danlu("rerun", "nc/0", "--continue", "args.max_train_steps=4", "--wait", env=reran)
    assert done.returncode == 0, done.stderr
    assert "# nc: 1 COMPLETED" in done.stderr  # the table of the runs waited for
    shown = json.loads(danlu("show", "nc/0", "--json", env=reran, check=True).stdout)
    assert [a["state"] for a in shown["attempts"]] == ["FAILED", "COMPLETED", "COMPLETED"]
    # a rerun starts from the latest attempt's overrides: the crash stays switched off
    assert "--crash_at_step=-1" in shown["command"] and "--max_train_steps=4" in shown["command"]
    assert shown["config"]["args"]["crash_at_step"] == -1 and shown["config"]["args"]["max_train_steps"] == 4
    failed = danlu("rerun", "nc/0", "--continue", "args.max_train_steps=6", "args.crash_at_step=5", "--wait", env=reran)
    assert failed.returncode == 1, failed.stderr  # as submit --wait: 1 when a run failed
    assert "# nc: 1 FAILED" in failed.stderr


# ---- messages -------------------------------------------------------------------------------------------------
def test_counts_in_messages_agree_with_their_nouns(danlu_env, monkeypatch, capsys):
    done = danlu_inprocess(
        ["submit", "experiment=tiny_dpo", "cluster=testcluster", "resources.partition=debug-A10-01",
         "resources.nodes=2", "--dry-run"],
        danlu_env, monkeypatch, capsys,
    )  # fmt: skip
    assert done.returncode == 2
    assert "has 1 node" in done.stderr and "1 nodes" not in done.stderr and "at most 1 node\n" in done.stderr
    done = danlu_inprocess(
        ["submit", "experiment=tiny_lightning", "cluster=testcluster", "resources.gpus_per_node=2",
         "args.trainer.devices=null"],
        danlu_env, monkeypatch, capsys,
    )  # fmt: skip
    assert "1 node x 2 tasks" in done.stderr and "(s)" not in done.stderr, done.stderr
    from launcher.words import counted

    assert [counted(1, "node"), counted(2, "node"), counted(1, "process", "processes")] == [
        "1 node",
        "2 nodes",
        "1 process",
    ]


def test_a_local_sweep_is_not_said_to_be_slurm_jobs(danlu_env, monkeypatch, capsys):
    done = danlu_inprocess(["submit", "-m", *TINY, "args.seed=1,2", "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("dry run: 2 runs on this machine") and "job" not in last.split("(")[0], last
    assert "(s)" not in last
    assert "# ==== local process 2 of 2: 1 run ====" in done.stdout and "# ==== job" not in done.stdout


def test_a_missing_workdir_names_the_variable_the_experiment_reads(danlu_env, monkeypatch, capsys):
    monkeypatch.delenv("DIFFUSIONDPO_DIR", raising=False)
    done = danlu_inprocess(
        ["submit", "experiment=diffusion_dpo", "cluster=local", "--dry-run"], danlu_env, monkeypatch, capsys
    )
    assert done.returncode == 2
    error, hint = [ln for ln in done.stderr.splitlines() if ln.startswith(("error: ", "hint: "))]
    assert "workdir" in error and "does not exist" in error
    assert "DIFFUSIONDPO_DIR" in hint and "workdir=" in hint, hint
    given = danlu_inprocess(
        ["submit", "experiment=diffusion_dpo", "cluster=local", "workdir=/nonexistent/x", "--dry-run"],
        danlu_env, monkeypatch, capsys,
    )  # fmt: skip
    assert "DIFFUSIONDPO_DIR" not in given.stderr  # workdir= was given: the variable is beside the point


# ---- arguments ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, verb",
    [
        (["submit", "experiment=tiny_dpo", "--bogus"], "submit"),
        (["rerun", "x/0", "--continue", "args.max_train_steps=3", "--bogus"], "rerun"),
        (["status", "--bogus"], "status"),
        (["env", "sync", "tiny", "--bogus"], "env sync"),
    ],
)
def test_an_unknown_option_is_named_alone_with_the_verbs_help(argv, verb, danlu_env, monkeypatch, capsys):
    done = danlu_inprocess(argv, danlu_env, monkeypatch, capsys)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: unrecognized option: --bogus",
        f"hint: `danlu {verb} --help` lists the arguments",
    ]


def test_the_same_flag_means_the_same_on_every_verb():
    import argparse

    from launcher.cli.parser import build_parser
    from launcher.cli.shell_complete import VALUE_OPTIONS

    (verbs,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001

    def flags(verb: str) -> dict:
        return {o: a for a in verbs.choices[verb]._actions for o in a.option_strings}  # noqa: SLF001

    submit, rerun, cancel, show = flags("submit"), flags("rerun"), flags("cancel"), flags("show")
    for flag in ("--wait", "--dry-run", "--json", "--config-dir", "--template-dir", "--refresh-cluster"):
        assert flag in rerun, flag
        assert rerun[flag].help == submit[flag].help or flag in ("--config-dir", "--template-dir"), flag
    assert {"--dry-run", "--json", "--state"} <= set(cancel) and {"--json", "--full"} <= set(show)
    value_flags = {o for v in ("submit", "rerun", "cancel", "status") for o, a in flags(v).items() if a.nargs != 0}
    assert value_flags - {"-h", "--help"} <= VALUE_OPTIONS  # shell completion knows which flags take a value


def test_rerun_takes_its_own_config_and_template_dirs(reran, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    for t in (Path(__file__).resolve().parent.parent / "templates").glob("*.j2"):
        (templates / t.name).write_text(("# my own template\n" if t.name == "header.sh.j2" else "") + t.read_text())
    (item,) = json.loads(danlu("status", "--all", "--json", "nc/0", env=reran, check=True).stdout)
    how = ["--continue", "args.max_train_steps=9"] if item["state"] == "COMPLETED" else []  # a new attempt either way
    done = danlu("rerun", "nc/0", *how, "--template-dir", str(templates), "--dry-run", env=reran)
    assert done.returncode == 0, done.stderr
    assert "# my own template" in done.stdout
    missing = danlu("rerun", "nc/0", *how, "--config-dir", str(tmp_path / "no"), "--dry-run", env=reran)
    assert missing.returncode == 2 and "config dir" in missing.stderr and "hint: " in missing.stderr


def test_cancel_dry_run_and_json(tmp_path):
    env = private_env(tmp_path)
    slow = [o for o in TINY if not o.startswith("args.max_train_steps=")] + ["args.max_train_steps=200"]
    submit_local(*slow, "args.sleep_per_step=1", "--name", "long", env=env, out=tmp_path / "out")
    dry = danlu("cancel", "long", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert [r["run"] for r in json.loads(dry.stdout)] == ["long/0"] and "nothing cancelled" in dry.stderr
    assert json.loads(danlu("status", "--json", env=env, check=True).stdout)[0]["state"] in ("PENDING", "RUNNING")
    from launcher.backends.local_jobs import parse_local_job_id
    from launcher.procs import descendants, pid_alive

    local = parse_local_job_id(json.loads(dry.stdout)[0]["job_id"])
    assert local is not None and local.here
    pid = local.pid
    deadline = time.time() + 60
    while len(descendants(pid)) < 3 and time.time() < deadline:  # the shell, submitit's controller, the agent ...
        time.sleep(0.5)
    procs = [pid, *descendants(pid)]
    done = danlu("cancel", "long", "--json", env=env)
    assert done.returncode == 0, done.stderr
    deadline = time.time() + 60
    while any(map(pid_alive, procs)) and time.time() < deadline:
        time.sleep(0.5)
    assert not [p for p in procs if pid_alive(p)], "the cancelled local run's processes live on"
    assert json.loads(done.stdout) == [{"run": "long/0", "job_id": json.loads(dry.stdout)[0]["job_id"],
                                        "state": "CANCELLED"}]  # fmt: skip
    assert "cancelled 1 run" in done.stderr and "(s)" not in done.stderr


def test_rerun_names_its_own_dirs_when_the_original_ones_are_gone(tmp_path):
    env = private_env(tmp_path)
    dirs = {}
    for name in ("configs", "templates", "configs2", "templates2"):
        dirs[name] = tmp_path / name
        (dirs[name] / "resources").mkdir(parents=True)
        (dirs[name] / "resources" / "tiny.yaml").write_text("nodes: 1\n")
        for t in (REPO / "templates").glob("*.j2"):
            (dirs[name] / t.name).write_text(t.read_text())
    failed = danlu("submit", *TINY, "args.crash_at_step=1", "--name", "gone", "--config-dir", str(dirs["configs"]),
                   "--template-dir", str(dirs["templates"]), "--wait", env=env)  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    for name in ("configs", "templates"):
        for f in sorted(dirs[name].rglob("*"), reverse=True):
            f.rmdir() if f.is_dir() else f.unlink()
        dirs[name].rmdir()
    lost = danlu("rerun", "gone/0", "--dry-run", env=env)
    assert lost.returncode == 2 and "danlu rerun --template-dir" in lost.stderr, lost.stderr
    lost = danlu("rerun", "gone/0", "--template-dir", str(dirs["templates2"]), "--dry-run", env=env)
    assert lost.returncode == 2 and "danlu rerun --config-dir" in lost.stderr, lost.stderr
    found = danlu("rerun", "gone/0", "--config-dir", str(dirs["configs2"]), "--template-dir", str(dirs["templates2"]),
                  "--dry-run", env=env)  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert "would rerun 1 run" in found.stderr
