"""Shell completion: `danlu completion bash|zsh` and the hidden `danlu __complete` behind it.

Candidates come from the argparse parser, the jobs/ config dirs and the run store (read-only), in a
fresh process that never imports Hydra. The scripts are exercised in real bash and zsh: the bash
function with COMP_* set as bash sets them, and both shells interactively in tmux (TAB pressed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from danlu_helpers import REPO, danlu

VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def store_env(tmp_path_factory) -> dict:
    """A private store holding two sweeps (written through the store's API, no jobs run)."""
    home = tmp_path_factory.mktemp("complete-home")
    env = {"DANLU_HOME": str(home), "DANLU_STORE": str(home / "store.sqlite"), "NO_COLOR": "1"}
    old = os.environ.get("DANLU_STORE")
    os.environ["DANLU_STORE"] = env["DANLU_STORE"]
    try:
        from launcher.store import NewRun, Store

        store = Store()
        for sweep, n in (("dpo-beta-1127", 3), ("ibq-a10", 1)):
            runs = [
                NewRun(
                    run=f"{sweep}/{i}",
                    idx=i,
                    overrides=[],
                    config={},
                    run_dir=str(home / sweep / str(i)),
                    workdir=str(home),
                    git_commit=None,
                    git_dirty=None,
                    partition="debug-4090-01",
                    nodes=1,
                    cluster_kind="slurm",
                    script="",
                    command="",
                    tag=f"t:{sweep}",
                )
                for i in range(n)
            ]
            assert store.create_sweep(sweep, sweep.split("-")[0], "testcluster", [], [], str(home / sweep), runs)
        store.close()
    finally:
        if old is None:
            os.environ.pop("DANLU_STORE", None)
        else:
            os.environ["DANLU_STORE"] = old
    return env


def complete(*words: str, env: dict | None = None, bash: str | None = None) -> list[str]:
    args = ["__complete"] + (["--bash", bash] if bash is not None else []) + ["--", "danlu", *words]
    done = danlu(*args, env=env, check=True, timeout=60)
    assert done.stderr == ""
    return done.stdout.splitlines()


def test_commands_and_flags():
    assert complete("") == [
        "submit",
        "status",
        "logs",
        "stacks",
        "report",
        "notify",
        "cancel",
        "show",
        "attach",
        "debug",
        "diff",
        "rerun",
        "cluster",
        "env",
        "options",
        "gc",
        "completion",
    ]
    assert complete("s") == ["submit", "status", "stacks", "show"]
    assert "__complete" not in complete("_")
    assert complete("-") == ["--help", "--version"]
    assert set(complete("submit", "--d")) == {"--dry-run"}
    assert {"--watch", "--all", "--state", "--json"} <= set(complete("status", "--"))
    assert "--interval" not in complete("status", "--")  # hidden options stay hidden
    assert complete("status", "--state", "FAILED,TI") == ["FAILED,TIMEOUT"]
    assert complete("env", "") == ["sync", "list"]
    assert complete("env", "sync", "") == ["diffusion_dpo", "ibq", "tiny"]
    assert complete("completion", "") == ["bash", "zsh"]
    assert complete("rerun", "--code", "") == ["own", "current"]
    assert complete("cluster", "") == ["init"]
    assert complete("debug", "--d") == ["--debugpy", "--dry-run"]
    assert complete("debug", "experiment=tiny_i") == ["experiment=tiny_ibq"]
    assert set(complete("gc", "--")) == {"--help", "--dry-run", "--older-than", "--json"}
    assert complete("gc", "--older-than", "") == []
    assert set(complete("cluster", "init", "--")) == {"--help", "--here", "--force", "--dry-run"}


def test_config_names():
    experiments = sorted(p.stem for p in (REPO / "jobs" / "experiment").glob("*.yaml"))
    assert complete("submit", "experiment=") == [f"experiment={e}" for e in experiments]
    assert complete("submit", "cluster=") == ["cluster=example", "cluster=local", "cluster=testcluster"]
    assert complete("submit", "-m", "experiment=tiny_dpo,tiny_") == [
        "experiment=tiny_dpo,tiny_dpo",
        "experiment=tiny_dpo,tiny_ibq",
        "experiment=tiny_dpo,tiny_lightning",
    ]
    keys = complete("submit", "")
    assert {"experiment=", "cluster=", "resources=", "env=", "launch=", "resources.nodes=", "env.name="} <= set(keys)
    assert complete("submit", "res") == complete("submit", "resources")
    assert "+args.beta_dpo=" in complete("submit", "experiment=tiny_dpo", "+args.b")
    assert complete("submit", "cluster=testcluster", "resources.partition=d") == [
        "resources.partition=debug-4090-01",
        "resources.partition=debug-A10-01",
    ]
    assert complete("submit", "env.name=t") == ["env.name=tiny"]
    assert complete("submit", "launch.kind=") == [
        f"launch.kind={k}" for k in ("accelerate", "torchrun", "lightning", "python")
    ]
    # rerun: the first word is a sweep or run, overrides after it
    assert complete("rerun", "x", "experiment=ti") == [
        "experiment=tiny_dpo",
        "experiment=tiny_ibq",
        "experiment=tiny_lightning",
    ]


def test_own_config_dir(tmp_path):
    (tmp_path / "jobs" / "experiment").mkdir(parents=True)
    (tmp_path / "jobs" / "experiment" / "mine.yaml").write_text("# @package _global_\nexperiment: mine\n")
    (tmp_path / "other" / "cluster").mkdir(parents=True)
    (tmp_path / "other" / "cluster" / "lab.yaml").write_text("name: lab\nkind: slurm\npartitions: {gpu-a: {}}\n")
    done = danlu("__complete", "--", "danlu", "submit", "experiment=m", cwd=tmp_path, check=True)
    assert done.stdout.split() == ["experiment=mine"]
    done = danlu(
        "__complete",
        "--",
        "danlu",
        "submit",
        "--config-dir",
        str(tmp_path / "other"),
        "cluster=l",
        cwd=tmp_path,
        check=True,
    )
    assert done.stdout.split() == ["cluster=lab", "cluster=local"]


def test_run_ids(store_env):
    assert complete("status", "", env=store_env) == ["ibq-a10", "dpo-beta-1127"]  # newest first
    assert complete("status", "dpo-beta-1127/", env=store_env) == [f"dpo-beta-1127/{i}" for i in range(3)]
    assert complete("cancel", "dpo-beta-1127/1", "i", env=store_env) == ["ibq-a10"]
    assert complete("rerun", "d", env=store_env) == ["dpo-beta-1127"]
    # logs/show take a run: a sweep is offered as 'sweep/', and a single matching sweep as its runs
    assert complete("logs", "", env=store_env) == ["ibq-a10/", "dpo-beta-1127/"]
    assert complete("show", "dpo", env=store_env) == [f"dpo-beta-1127/{i}" for i in range(3)]
    assert complete("attach", "dpo", env=store_env) == [f"dpo-beta-1127/{i}" for i in range(3)]
    assert complete("logs", "ibq-a10/0", "", env=store_env) == []
    # diff takes two runs, then nothing
    assert complete("diff", "dpo-beta-1127/0", "ib", env=store_env) == ["ibq-a10/0"]
    assert complete("diff", "dpo-beta-1127/0", "ibq-a10/0", "", env=store_env) == []
    # no store yet: no candidates, no error, nothing created
    empty = {"DANLU_STORE": str(Path(store_env["DANLU_HOME"]) / "none" / "store.sqlite")}
    assert complete("status", "", env=empty) == []
    assert not Path(empty["DANLU_STORE"]).parent.exists()


def test_bash_word_breaks():
    # bash splits `experiment=ti` into 'experiment' '=' 'ti': the reply replaces only bash's own word
    assert complete("submit", "experiment=ti", bash="ti") == ["tiny_dpo", "tiny_ibq", "tiny_lightning"]
    assert complete("submit", "experiment=", bash="=") == [
        f"={p.stem}" for p in sorted((REPO / "jobs" / "experiment").glob("*.yaml"))
    ]


def test_fast_and_light():
    start = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "launcher.cli",
            "__complete",
            "--",
            "danlu",
            "submit",
            "cluster=testcluster",
            "resources.partition=",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    wall = time.monotonic() - start
    assert done.returncode == 0 and "resources.partition=debug-A10-01" in done.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert not imported & {"hydra", "omegaconf", "submitit", "rich", "torch", "accelerate", "jinja2"}, imported
    print(f"danlu __complete: {wall:.2f} s wall with -X importtime")


def test_scripts():
    bash = danlu("completion", "bash", check=True).stdout
    assert "complete -o default -F _danlu_complete danlu" in bash and "danlu __complete --bash" in bash
    assert subprocess.run(["bash", "-n"], input=bash, text=True).returncode == 0
    zsh = danlu("completion", "zsh", check=True).stdout
    assert zsh.startswith("#compdef danlu") and "compdef _danlu danlu" in zsh
    if shutil.which("zsh"):
        assert subprocess.run(["zsh", "-n"], input=zsh, text=True).returncode == 0
    bad = danlu("completion", "fish")
    assert bad.returncode == 2 and bad.stderr.startswith("error: argument shell: invalid choice")


def _bash_complete(line: str, env: dict | None = None) -> list[str]:
    """Call the generated bash function the way bash's programmable completion does."""
    script = danlu("completion", "bash", check=True).stdout
    program = (
        script
        + r"""
line="$1"
COMP_LINE="$line"; COMP_POINT=${#line}
# bash's own word splitting (COMP_WORDBREAKS has '=' and ':')
read -r -a COMP_WORDS <<<"$(sed -E 's/([=:])/ \1 /g' <<<"$line")"
[[ "$line" =~ [[:space:]]$ ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_danlu_complete
printf '%s\n' "${COMPREPLY[@]}"
"""
    )
    full = dict(os.environ, **(env or {}))
    full["PATH"] = f"{VENV_BIN}:{full['PATH']}"
    done = subprocess.run(
        ["bash", "-c", program, "bash", line], capture_output=True, text=True, env=full, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    return [c for c in done.stdout.splitlines() if c]


def test_bash_function(store_env):
    assert _bash_complete("danlu sta") == ["status", "stacks"]
    assert _bash_complete("danlu submit experiment=tiny_") == ["tiny_dpo", "tiny_ibq", "tiny_lightning"]
    assert _bash_complete("danlu submit experiment=") == [
        f"={p.stem}" for p in sorted((REPO / "jobs" / "experiment").glob("*.yaml"))
    ]
    assert _bash_complete("danlu logs dpo-beta-1127/", env=store_env) == [f"dpo-beta-1127/{i}" for i in range(3)]


def _tmux(shell_cmd: list[str], typed: str, expect: str, env: dict, tabs: int = 1) -> str:
    """Type `typed`, TAB and 'Z' into an interactive shell in tmux; return the screen once it shows `expect`."""
    name = f"danlu-complete-{os.getpid()}-{time.monotonic_ns()}"
    full = dict(os.environ, **env)
    full["PATH"] = f"{VENV_BIN}:{full['PATH']}"
    sockdir = tempfile.mkdtemp(prefix="danlu-tmux-")
    tmux = ["tmux", "-S", f"{sockdir}/s"]  # a private server: it starts with this environment (PATH, DANLU_STORE)
    subprocess.run(
        [*tmux, "-f", "/dev/null", "new-session", "-d", "-s", name, "-x", "160", "-y", "20", *shell_cmd],
        env=full,
        check=True,
        cwd=REPO,
    )
    screen = ""
    try:
        time.sleep(1.0)  # the shell reads its rc file
        subprocess.run([*tmux, "send-keys", "-t", name, typed], check=True)
        for _ in range(tabs):
            time.sleep(0.3)
            subprocess.run([*tmux, "send-keys", "-t", name, "Tab"], check=True)
        time.sleep(0.3)
        subprocess.run([*tmux, "send-keys", "-t", name, "-l", "Z"], check=True)  # shows the space a completion added
        for _ in range(60):
            time.sleep(0.25)
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
            if expect in screen:
                break
        return screen
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        shutil.rmtree(sockdir, ignore_errors=True)


# tests/run.sh installs tmux and zsh; only outside CI may a machine without them skip these
IN_CI = os.environ.get("CI") == "true"


@pytest.mark.skipif(shutil.which("tmux") is None and not IN_CI, reason="tmux is not installed")
def test_interactive_bash(store_env, tmp_path):
    rc = tmp_path / "bashrc"
    rc.write_text('PS1="$ "\neval "$(danlu completion bash)"\n')
    bash = ["bash", "--noprofile", "--rcfile", str(rc), "-i"]
    screen = _tmux(bash, "danlu show dpo-beta-1127/", "dpo-beta-1127/2", store_env, tabs=2)
    assert all(f"dpo-beta-1127/{i}" in screen for i in range(3)), screen  # TAB TAB lists the runs
    screen = _tmux(bash, "danlu show ibq", "danlu show ibq-a10/0 Z", store_env)
    assert "danlu show ibq-a10/0 Z" in screen, screen  # the only run of the only matching sweep, then a space
    screen = _tmux(bash, "danlu submit experiment=tiny_d", "experiment=tiny_dpo Z", store_env)
    assert "danlu submit experiment=tiny_dpo Z" in screen, screen
    screen = _tmux(bash, "danlu submit experim", "experiment=Z", store_env)
    assert "danlu submit experiment=Z" in screen, screen  # no space after a key


@pytest.mark.skipif(
    (shutil.which("tmux") is None or shutil.which("zsh") is None) and not IN_CI, reason="tmux or zsh is not installed"
)
def test_interactive_zsh(store_env, tmp_path):
    (tmp_path / ".zshrc").write_text(
        'PS1="%% "\nautoload -Uz compinit && compinit -u\neval "$(danlu completion zsh)"\n'
    )
    env = dict(store_env, ZDOTDIR=str(tmp_path))
    screen = _tmux(["zsh", "-i"], "danlu submit cluster=testc", "cluster=testcluster Z", env)
    assert "danlu submit cluster=testcluster Z" in screen, screen
    screen = _tmux(["zsh", "-i"], "danlu status ibq", "ibq-a10 Z", env)
    assert "danlu status ibq-a10 Z" in screen, screen
    screen = _tmux(["zsh", "-i"], "danlu submit env.na", "env.name=Z", env)
    assert "danlu submit env.name=Z" in screen, screen  # no space after a key
    screen = _tmux(["zsh", "-i"], "danlu logs dpo-beta-1127/", "dpo-beta-1127/2", env, tabs=2)
    assert all(f"dpo-beta-1127/{i}" in screen for i in range(3)), screen
