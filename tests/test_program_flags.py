"""Issue 14: a program's own flags, read from its source before submit, and what danlu refuses because of them."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from danlu_helpers import REPO, danlu_env, danlu_inprocess  # noqa: F401

from launcher.spec.program_flags import parse_source, read_flags

UPSTREAM = Path(__file__).with_name("upstream")

SOURCE = textwrap.dedent("""
    import argparse
    def parse_args():
        parser = argparse.ArgumentParser(description="x")
        parser.add_argument("--max_train_steps", type=int, default=60, help="Total  optimizer\\n steps.")
        parser.add_argument("--max_grad_norm", type=float, default=1.0)
        parser.add_argument("--mixed_precision", type=str, default="fp16", choices=["no", "fp16", "bf16"])
        group = parser.add_argument_group("data")
        group.add_argument("-b", "--base", nargs="*", default=list(), metavar="base_config.yaml")
        group.add_argument("--use-ema", dest="ema", action="store_true")
        parser.add_argument("--cache_dir", default=os.environ.get("CACHE"))
        parser.add_argument("positional")
        return parser.parse_args()
""")


def test_argparse_flags_are_read_without_running_the_program():
    flags = parse_source(SOURCE, "train.py")
    assert flags.parser == "argparse" and flags.checkable and flags.abbrev
    by = {f.name: f for f in flags.flags}
    assert list(by) == ["max_train_steps", "max_grad_norm", "mixed_precision", "base", "use-ema", "cache_dir"]
    assert (by["max_train_steps"].type, by["max_train_steps"].default, by["max_train_steps"].help) == (
        "int",
        60,
        "Total optimizer steps.",
    )
    assert by["mixed_precision"].choices == ("no", "fp16", "bf16") and by["mixed_precision"].default == "fp16"
    assert by["base"].options == ("-b", "--base") and by["base"].nargs == "*" and by["base"].default_text == "list()"
    assert by["use-ema"].dest == "ema" and not by["use-ema"].takes_value
    assert by["cache_dir"].default is None and by["cache_dir"].default_text == "os.environ.get('CACHE')"
    assert flags.find("b") is by["base"] and flags.find("base") is by["base"] and flags.find("bas") is None
    assert [f.name for f in flags.expansions("max_")] == ["max_train_steps", "max_grad_norm"]
    assert flags.similar("use_ema") == ["use-ema"] and flags.similar("mixed_precison") == ["mixed_precision"]


@pytest.mark.parametrize(
    "source, parser, checkable",
    [
        (
            "import argparse\np = argparse.ArgumentParser()\np.add_argument('--a')\n"
            "args, rest = p.parse_known_args()\n",
            "argparse",
            False,
        ),
        ("from lightning.pytorch.cli import LightningCLI\nLightningCLI(Model)\n", "lightningcli", False),
        ("from jsonargparse import ArgumentParser\n", "jsonargparse", False),
        ("import click\n@click.command()\ndef main(): pass\n", "click", False),
        ("import hydra\n@hydra.main(config_path='c')\ndef main(cfg): pass\n", "hydra", False),
        ("import sys\nprint(sys.argv)\n", "unknown", False),
        ("import argparse\np = argparse.ArgumentParser()\np.add_argument('--a')\np.parse_args()\n", "argparse", True),
    ],
)
def test_what_cannot_be_checked_is_said(source, parser, checkable):
    flags = parse_source(source)
    assert (flags.parser, flags.checkable) == (parser, checkable)
    if not checkable:
        assert flags.why_not_checked()


def test_allow_abbrev_false_means_no_prefix_expansion():
    flags = parse_source(
        "import argparse\np = argparse.ArgumentParser(allow_abbrev=False)\n"
        "p.add_argument('--max_train_steps')\np.parse_args()\n"
    )
    assert not flags.abbrev and flags.expansions("max_train") == []


def test_the_cache_follows_the_file(tmp_path):
    prog = tmp_path / "train.py"
    prog.write_text("import argparse\np = argparse.ArgumentParser()\np.add_argument('--a')\np.parse_args()\n")
    assert [f.name for f in read_flags(prog).flags] == ["a"]
    prog.write_text("import argparse\np = argparse.ArgumentParser()\np.add_argument('--bb')\np.parse_args()\n")
    assert [f.name for f in read_flags(prog).flags] == ["bb"]
    assert read_flags(tmp_path / "missing.py") is None


# ---- refused at submit, with the same verdict on --dry-run ------------------------------------------------
T = ["experiment=tiny_dpo", "cluster=local"]
REFUSED = {  # override -> what the one-line error and its hint must say
    "+args.beta_dop=2500": ("train.py has no flag --beta_dop", "did you mean --beta_dpo?"),
    "args.beta_dop=2500": ("train.py has no flag --beta_dop", "did you mean --beta_dpo?"),
    "args.max_train_step=3": ("argparse would take it for --max_train_steps", "args.max_train_steps="),
    "+args.crash=1": ("it begins --crash_at_step, --crash_rank", "full name"),
    "args.mixed_precision=fp17": ("'fp17' is not one of no, fp16, bf16", "one of no, fp16, bf16"),
    "args.sleep_per_step=slow": ("'slow' is not a float", "args.sleep_per_step"),
    "args.max_train_steps=2.5": ("'2.5' is not an int", "args.max_train_steps"),
    "args.plain_accelerator=3": ("--plain_accelerator is a switch", "true or false"),
    "args.seed=true": ("true renders a bare --seed, but it takes a value", "args.seed"),
}


@pytest.mark.parametrize("override", sorted(REFUSED))
@pytest.mark.parametrize("dry", [False, True])
def test_args_the_program_would_refuse_are_refused_before_the_queue(override, dry, danlu_env, monkeypatch, capsys):
    done = danlu_inprocess(["submit", *T, override] + (["--dry-run"] if dry else []), danlu_env, monkeypatch, capsys)
    assert done.returncode == 2, (done.stdout, done.stderr)
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error: ")]
    hints = [ln for ln in done.stderr.splitlines() if ln.startswith("hint: ")]
    want_error, want_hint = REFUSED[override]
    assert len(errors) == 1 and want_error in errors[0], done.stderr
    assert len(hints) == 1 and want_hint in hints[0], done.stderr
    assert not Path(danlu_env["DANLU_RUNS_DIR"]).exists() and not Path(danlu_env["DANLU_STORE"]).exists()


def test_a_declared_flag_needs_no_plus_and_dry_run_says_what_was_checked(danlu_env, monkeypatch, capsys):
    done = danlu_inprocess(["submit", *T, "args.pretrain_steps=5", "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    assert "--pretrain_steps=5" in done.stdout
    assert "program args checked against the 19 argparse flags of train.py" in done.stderr


def test_a_program_whose_flags_cannot_be_read_is_not_refused(danlu_env, monkeypatch, capsys):
    done = danlu_inprocess(
        ["submit", "experiment=tiny_lightning", "cluster=local", "+args.model.anything=1", "--dry-run"],
        danlu_env,
        monkeypatch,
        capsys,
    )
    assert done.returncode == 0, done.stderr
    assert "program args not checked: train.py builds its flags at run time (lightningcli)" in done.stderr


def test_launch_mixed_precision_reaches_a_program_with_its_own_flag(danlu_env, monkeypatch, capsys):
    """DiffusionDPO's train.py passes its own --mixed_precision (default fp16) to Accelerator, where it wins over
    `accelerate launch --mixed_precision`: danlu's one setting goes to both; a different value in args is refused."""
    done = danlu_inprocess(["submit", *T, "launch.mixed_precision=bf16", "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    assert "--mixed_precision bf16 " in done.stdout and "--mixed_precision=bf16" in done.stdout
    done = danlu_inprocess(
        ["submit", *T, "launch.mixed_precision=bf16", "args.mixed_precision=no"], danlu_env, monkeypatch, capsys
    )
    assert done.returncode == 2 and "launch.mixed_precision=bf16 but args.mixed_precision=no" in done.stderr
    done = danlu_inprocess(
        ["submit", *T, "launch.mixed_precision=no", "args.mixed_precision=no", "--dry-run"],
        danlu_env,
        monkeypatch,
        capsys,
    )
    assert done.returncode == 0, done.stderr


# ---- danlu options experiment=NAME ------------------------------------------------------------------------
def fake_checkout(root: Path, data_file: str, program: str) -> Path:
    """A checkout whose program declares exactly the upstream flags recorded in tests/upstream/ (facts read from
    the upstream source at the recorded commit: names, defaults, types, choices, actions)."""
    data = json.loads((UPSTREAM / data_file).read_text())
    lines = ["import argparse", "parser = argparse.ArgumentParser()"]
    for f in data["flags"]:
        kw = [f"dest={f['dest']!r}"]
        if f["default_text"]:
            kw.append(f"default={f['default_text']}")
        for key in ("type", "action"):
            if f[key]:
                kw.append(f"{key}={f[key]}" if key == "type" else f"{key}={f[key]!r}")
        if f["choices"] is not None:
            kw.append(f"choices={f['choices']!r}")
        if f["nargs"] is not None:
            kw.append(f"nargs={f['nargs']!r}" if not f["nargs"].isdigit() else f"nargs={f['nargs']}")
        if f["required"]:
            kw.append("required=True")
        lines.append(f"parser.add_argument({', '.join(map(repr, f['options']))}, {', '.join(kw)})")
    lines.append(
        "args, unknown = parser.parse_known_args()" if data["parse_known_args"] else "args = parser.parse_args()"
    )
    root.mkdir(parents=True, exist_ok=True)
    (root / program).write_text("\n".join(lines) + "\n")
    return root


def test_options_lists_the_programs_flags_with_their_upstream_defaults(tmp_path, danlu_env, monkeypatch, capsys):
    checkout = fake_checkout(tmp_path / "DiffusionDPO", "diffusion_dpo_train.json", "train.py")
    done = danlu_inprocess(
        ["options", "experiment=diffusion_dpo", f"workdir={checkout}"], danlu_env, monkeypatch, capsys
    )
    assert done.returncode == 0, done.stderr
    rows = {ln.split()[0]: ln for ln in done.stdout.splitlines() if ln.startswith("args.")}
    assert rows["args.resolution"].split()[1] == "None"
    assert rows["args.mixed_precision"].split()[1] == "fp16" and "one of no, fp16, bf16" in rows["args.mixed_precision"]
    assert rows["args.beta_dpo"].split()[1] == "5000" and "experiment sets 5000" in rows["args.beta_dpo"]
    assert "resources.nodes" in done.stdout  # danlu's own keys beside the program's
    js = json.loads(
        danlu_inprocess(
            ["options", "experiment=diffusion_dpo", f"workdir={checkout}", "--json"], danlu_env, monkeypatch, capsys
        ).stdout
    )
    assert {r["key"] for r in js["program"]} >= {"args.resolution", "args.mixed_precision", "args.beta_dpo"}


# ---- on the test cluster ---------------------------------------------------------------------------------
@pytest.mark.slurm
def test_a_typo_never_reaches_the_queue(slurm_cluster, danlu_env):
    """`+args.beta_dop=2500` on a 2-node job of the test cluster: refused before sbatch, nothing queued."""
    import subprocess
    import uuid

    name = f"typo-{uuid.uuid4().hex[:6]}"
    from danlu_helpers import danlu

    done = danlu(
        "submit",
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "resources.nodes=2",
        "+args.beta_dop=2500",
        "--name",
        name,
        env=danlu_env,
    )
    assert done.returncode == 2 and "hint: did you mean --beta_dpo?" in done.stderr, done.stderr
    queue = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True, check=True).stdout
    acct = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "-S", "now-10minutes", "-o", "JobName%200"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert name not in queue and name not in acct
    assert not Path(danlu_env["DANLU_RUNS_DIR"]).exists() and not Path(danlu_env["DANLU_STORE"]).exists()


@pytest.mark.slurm
def test_a_usage_error_in_the_job_is_the_reason_and_ends_both_nodes_fast(slurm_cluster, danlu_env):
    """A LightningCLI program's flags cannot be read before submit: `+args.trainer.bogus=1` reaches the job. Its
    own `error: unrecognized arguments` line is the status reason, and the 2-node job ends within 10 s of it."""
    import re
    import time

    from danlu_helpers import status_json, submit_json, wait_status

    from launcher.layout import SweepLayout, time_index

    name = "usage-error"
    out = submit_json(
        "experiment=tiny_lightning",
        "cluster=testcluster",
        "resources.nodes=2",
        "args.trainer.num_nodes=2",
        "+args.trainer.bogus=1",
        "--name",
        name,
        env=danlu_env,
    )
    assert out["runs"][0]["job_id"]
    (item,) = wait_status(name, danlu_env, timeout=400, poll=2)
    assert item["state"] == "FAILED", item
    assert item["reason"] == "usage error: unrecognized arguments: --trainer.bogus=1", item
    restart = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / name).run(0).attempt(1).restart(0)
    said = []
    for rank in (0, 1):
        for log in (restart.rank_log(rank, stderr=True), restart.rank_log(rank)):
            at = log.read_bytes().find(b"error: unrecognized arguments") if log.exists() else -1
            if at >= 0 and time_index(log).exists():
                entries = [ln.split() for ln in time_index(log).read_text().splitlines() if ln.strip()]
                said.append(max(float(t) for off, t in entries if int(off) <= at))
    assert said, [p.name for p in restart.root.iterdir()]
    ends = []
    for path in restart.agent_logs().values():
        for line in path.read_text().splitlines():
            m = re.match(r"(\S+)\.(\d{3}) .*\] exit code ", line)
            if m:
                ends.append(time.mktime(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + int(m.group(2)) / 1000)
    assert len(ends) == 2, restart.agent_logs()
    assert max(ends) - min(said) < 10, (said, ends)
    assert status_json(name, env=danlu_env)[0]["state"] == "FAILED"


def test_a_lightningcli_run_with_two_config_files_completes(tmp_path, danlu_env):
    """LightningCLI merges several --config files in order: danlu renders one --config per file."""
    from danlu_helpers import danlu

    from launcher.layout import SweepLayout

    second = tmp_path / "short.yaml"
    second.write_text("trainer:\n  max_steps: 6\n  val_check_interval: 3\n")
    done = danlu(
        "submit",
        "experiment=tiny_lightning",
        "cluster=local",
        f"args.config=[config.yaml,{second}]",
        "args.trainer.max_steps=null",
        "--name",
        "two-configs",
        "--wait",
        env=danlu_env,
    )
    assert done.returncode == 0, done.stderr
    restart = SweepLayout(Path(danlu_env["DANLU_RUNS_DIR"]) / "two-configs").run(0).attempt(1).restart(0)
    agent = "".join(p.read_text() for p in restart.agent_logs().values())
    # the workdir's config.yaml is read from the run's frozen code; a file outside the workdir stays where it is
    frozen = rf"--config=\S+/\.danlu-code/trees/\w+/config\.yaml --config={re.escape(str(second))}"
    assert re.search(frozen, agent), agent
    log = "".join(p.read_text(errors="replace") for p in restart.logs() if p.suffix == ".log")
    assert "done steps=6" in log, log[-1500:]
