"""Issue 7: override values reach argv verbatim and execute nothing; secrets are passed by name only
and never written by danlu; run directories and scripts are private."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from danlu_helpers import REPO, danlu, danlu_env, submit_json, wait_status  # noqa: F401

pytestmark = pytest.mark.slurm

NASTY = {
    "semi": "x; touch {m}/semi",
    "and": "a && touch {m}/and",
    "subst": "$(touch {m}/subst)",
    "backtick": "`touch {m}/backtick`",
    "quotes": "it's \"quoted\" '",
    "newline": "line1\ntouch {m}/newline",
    "spaces": "  two  spaces  ",
    "unicode": "丹炉 ünïcødé ✓",
    "dollar": "$HOME $$ $1",
    "glob": "* ?[a]",
}


def _hydra_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def test_injection_reaches_argv_verbatim(slurm_cluster, danlu_env, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    values = {k: v.replace("{m}", str(markers)) for k, v in NASTY.items()}
    overrides = [f"+args.{k}={_hydra_quote(v)}" for k, v in values.items()]
    out = submit_json(
        "cluster=testcluster",
        "launch=python",
        f"workdir={REPO / 'tests' / 'programs'}",
        "program=print_argv.py",
        "--name",
        "inject",
        *overrides,
        env=danlu_env,
    )
    (run,) = out["runs"]
    (item,) = wait_status("inject", danlu_env, timeout=180)
    assert item["state"] == "COMPLETED", item
    log = danlu("logs", run["run"], env=danlu_env, check=True).stdout
    argv = json.loads(next(line for line in log.splitlines() if line.startswith("ARGV "))[5:])
    assert argv == [f"--{k}={v}" for k, v in values.items()]
    assert list(markers.iterdir()) == [], "an override value was executed"


def test_secrets_passed_by_name_never_written(slurm_cluster, danlu_env, tmp_path):
    secret, wandb = "hf_SECRET_do_not_write_4242", "wandb_SECRET_do_not_write_1717"
    env = dict(danlu_env, HF_TOKEN=secret, WANDB_API_KEY=wandb)
    out = submit_json(
        "cluster=testcluster",
        "launch=python",
        f"workdir={REPO / 'tests' / 'programs'}",
        "program=print_argv.py",
        "--name",
        "secrets",
        env=env,
    )
    (run,) = out["runs"]
    (item,) = wait_status("secrets", danlu_env, timeout=180)
    assert item["state"] == "COMPLETED", item
    log = danlu("logs", run["run"], env=danlu_env, check=True).stdout
    assert 'SECRETS_VISIBLE {"HF_TOKEN": true, "WANDB_API_KEY": true}' in log  # the job got them, by name

    written = [Path(danlu_env["DANLU_HOME"]), Path(danlu_env["DANLU_RUNS_DIR"])]
    files = [f for d in written for f in d.rglob("*") if f.is_file()]
    assert any(f.suffix == ".sbatch" for f in files) and any(f.name == "store.sqlite" for f in files)
    for f in files:
        data = f.read_bytes()
        assert secret.encode() not in data and wandb.encode() not in data, f"secret written to {f}"

    show = json.loads(danlu("show", run["run"], "--json", env=danlu_env, check=True).stdout)
    assert "HF_TOKEN" in show["script"] and secret not in show["script"]  # named, not valued

    # private: run dirs 0700, scripts and the store 0600
    run_dir = Path(show["run_dir"])
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(run_dir.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(show["script_path"]).stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(danlu_env["DANLU_STORE"]).stat().st_mode) == 0o600
    for f in (run_dir / "logs").rglob("*"):
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
