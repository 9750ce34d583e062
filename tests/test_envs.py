"""Job environments: envs/<name>/pyproject.toml, `danlu env sync|list`, and a job that runs inside one.

uv does not read pip's configuration. On these machines pip finds the CPU torch wheel through its own
config (`pip config list`: find-links and file:// extra indexes); the tests hand uv the same places
through uv's own settings (UV_FIND_LINKS, UV_DEFAULT_INDEX/UV_INDEX, offline), and tell it to ignore
the env's `tool.uv.sources` (PyTorch's index), so no test downloads anything, least of all a CUDA torch.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest
import tomllib
from danlu_helpers import REPO, danlu, danlu_env, danlu_inprocess, wait_status  # noqa: F401

ENVS = REPO / "envs"


def pip_locations() -> dict:
    """find-links / index-url / extra-index-url from `pip config list` (pip's own view of its config)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
    ).stdout
    found: dict = {}
    for line in out.splitlines():
        m = re.match(r"^[^.]*\.([\w-]+)='(.*)'$", line.strip())
        if m:
            found.setdefault(m.group(1), m.group(2))  # the first (most specific) wins
    return found


def uv_env() -> dict:
    """uv's own settings pointing at pip's local wheel sources; never the network."""
    pip = pip_locations()
    indexes = pip.get("extra-index-url", "").split()
    if pip.get("index-url"):
        indexes.insert(0, pip["index-url"])
    local = [u for u in indexes if u.startswith("file:")]
    if not (local or pip.get("find-links")):
        if os.environ.get("CI") == "true":
            pytest.fail("pip has no local wheel source configured (`pip config list`): a uv sync here would download")
        pytest.skip("pip has no local wheel source configured (`pip config list`): a uv sync here would download")
    env = {
        "UV_NO_SOURCES": "1",  # envs/tiny takes torch from PyTorch's CPU index on real machines
        "UV_OFFLINE": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PYTHON": sys.executable,
        "UV_INDEX_STRATEGY": "unsafe-best-match",
        "UV_NO_PROGRESS": "1",
    }
    if pip.get("find-links"):
        env["UV_FIND_LINKS"] = pip["find-links"]
    if local:
        env["UV_DEFAULT_INDEX"] = local[0]
        if local[1:]:
            env["UV_INDEX"] = " ".join(local[1:])
    return env


def load(name: str) -> dict:
    return tomllib.loads((ENVS / name / "pyproject.toml").read_text())


def test_env_files_pin_torch_per_index():
    for name in ("diffusion_dpo", "ibq"):
        data = load(name)
        deps = data["project"]["dependencies"]
        torch = next(d for d in deps if d.startswith("torch=="))
        assert re.fullmatch(r"torch==\d+\.\d+\.\d+", torch), torch  # pinned, never "newest"
        index = {i["name"]: i for i in data["tool"]["uv"]["index"]}["pytorch-cu121"]
        assert index["url"] == "https://download.pytorch.org/whl/cu121" and index["explicit"] is True
        assert data["tool"]["uv"]["sources"]["torch"] == [{"index": "pytorch-cu121"}]
    tiny = load("tiny")
    assert "torch==2.13.0" in tiny["project"]["dependencies"]
    assert {"accelerate>=1.0", "numpy"} <= set(tiny["project"]["dependencies"])
    cpu = {i["name"]: i for i in tiny["tool"]["uv"]["index"]}["pytorch-cpu"]
    assert cpu["url"].endswith("/whl/cpu") and cpu["explicit"] is True
    ignored = subprocess.run(
        ["git", "check-ignore", "envs/tiny/.venv/bin/python", "envs/ibq/.venv/x"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ignored == ["envs/tiny/.venv/bin/python", "envs/ibq/.venv/x"]


def test_env_list():
    done = danlu("env", "list", "--json", check=True)
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert {"diffusion_dpo", "ibq", "tiny"} <= set(rows)
    assert rows["ibq"]["dir"] == str(ENVS / "ibq")
    plain = danlu("env", "list", check=True).stdout.splitlines()
    assert plain[0].split() == ["NAME", "SYNCED", "PYTHON", "DIR"]


def test_env_sync_bad_input(monkeypatch, capsys, tmp_path):
    done = danlu("env", "sync", "nope")
    assert done.returncode == 2 and done.stdout == ""
    err = done.stderr.strip().splitlines()
    assert err[0] == "error: no environment named 'nope' (no envs/nope/pyproject.toml)"
    assert err[1].startswith("hint: environments: ") and "tiny" in err[1]
    done = danlu("env", "sync", "../x")
    assert done.returncode == 2 and done.stderr.startswith("error: bad environment name")
    # no uv next to the interpreter nor on PATH
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    done = danlu_inprocess(["env", "sync", "tiny"], {"PATH": str(tmp_path)}, monkeypatch, capsys)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: uv is not installed (`danlu env sync` runs `uv sync`)",
        "hint: pip install uv",
    ]


def test_submit_with_missing_env(tmp_path):
    base = ["submit", "experiment=tiny_dpo", "cluster=testcluster", "env=uv"]
    done = danlu(*base, "env.name=nope")
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert err[0] == "error: no environment named 'nope' (no envs/nope/pyproject.toml)", err
    assert err[1].startswith("hint: environments: ") and "tiny" in err[1]
    # an environment that exists but was never synced: the hint is the command that builds it
    (tmp_path / "envs" / "fresh").mkdir(parents=True)
    (tmp_path / "envs" / "fresh" / "pyproject.toml").write_text('[project]\nname = "fresh"\nversion = "0"\n')
    done = danlu(*base, "env.name=fresh", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert err[0].startswith("error: environment 'fresh' is missing") and err[1] == "hint: danlu env sync fresh"
    assert done.stdout == ""


@pytest.mark.slurm
@pytest.mark.timeout(1200)  # the sync, a cold import of torch from the new venv and a job, on a loaded machine
def test_env_sync_tiny_and_a_job_inside_it(slurm_cluster, danlu_env, tmp_path):
    env = dict(danlu_env, **uv_env())
    start = time.monotonic()
    done = danlu("env", "sync", "tiny", "--json", env=env, timeout=600)
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    print(f"danlu env sync tiny: {seconds:.1f} s ({info})")
    python = ENVS / "tiny" / ".venv" / "bin" / "python"
    assert info["python"] == str(python) and python.exists()
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import sys, torch, accelerate, numpy, importlib.metadata as m; "
            "print(sys.prefix, torch.__version__, "
            "any(d.metadata['Name'].startswith('nvidia') for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )  # 120 s was not enough under CI's load
    assert probe.returncode == 0, probe.stderr
    prefix, version, has_nvidia = probe.stdout.split()
    assert prefix == str(ENVS / "tiny" / ".venv") and version == "2.13.0+cpu" and has_nvidia == "False"

    # a tiny_dpo job in that env: its agent log names the launcher and interpreter of envs/tiny/.venv
    out = json.loads(
        danlu(
            "submit",
            "experiment=tiny_dpo",
            "cluster=testcluster",
            "env=uv",
            "env.name=tiny",
            "args.max_train_steps=3",
            "+args.pretrain_steps=10",
            "--name",
            "in-env",
            "--json",
            env=danlu_env,
            check=True,
        ).stdout
    )
    (run,) = out["runs"]
    show = json.loads(danlu("show", run["run"], "--json", env=danlu_env, check=True).stdout)
    assert f"source {shlex.quote(str(ENVS / 'tiny' / '.venv' / 'bin' / 'activate'))}" in show["script"]
    (item,) = wait_status("in-env", danlu_env, timeout=300)
    log = danlu("logs", run["run"], "--err", env=danlu_env, check=True).stdout  # the job's output: agent lines
    assert item["state"] == "COMPLETED", (item, log[-3000:])
    launcher = next(line for line in log.splitlines() if "] launcher: " in line).split("] launcher: ", 1)[1]
    assert launcher == f"{ENVS / 'tiny' / '.venv' / 'bin' / 'accelerate'} (interpreter {python})", launcher
