"""What a request chooses without saying so: which cluster runs it (never the login node by default where Slurm is),
what the live cluster can hold (not only what its profile says), which of danlu's own keys exist, and what an
override's interpolation reads (the final config, as in Hydra)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from danlu_helpers import danlu, danlu_env, danlu_inprocess  # noqa: F401
from test_bad_input import assert_one_line_error, guard  # noqa: F401

TINY = ["experiment=tiny_dpo"]


def hint_of(done) -> str:
    (hint,) = [ln for ln in done.stderr.splitlines() if ln.startswith("hint: ")]
    return hint


def user_default(root: Path, body: str) -> Path:
    """A config dir whose local/default.yaml says `body`."""
    (root / "local").mkdir(parents=True)
    (root / "local" / "default.yaml").write_text(body)
    return root


# ---- which cluster: never the login node by default where Slurm is ----------------------------------------------
def test_a_submit_naming_no_cluster_is_refused_where_sbatch_is(guard, danlu_env, monkeypatch, capsys):  # noqa: F811
    """With sbatch on PATH (the guard's) and no cluster chosen anywhere, the built-in default `cluster: local` would
    train on the login node: refused, --dry-run and sweeps alike, with how to choose (here on purpose, or a cluster
    made the default with the file's exact lines)."""
    for argv in (TINY, TINY + ["--dry-run"], ["-m", *TINY, "args.seed=1,2"]):
        done = danlu_inprocess(["submit", *argv], danlu_env, monkeypatch, capsys)
        err = assert_one_line_error(done)
        assert "no cluster chosen" in err and "login node" in err, err
        hint = hint_of(done)
        for said in (
            "cluster=local",
            "cluster=NAME",
            "danlu cluster init",
            "jobs/local/default.yaml",
            "`# @package _global_`",
            "`- override /cluster: NAME`",
        ):
            assert said in hint, (said, hint)
    guard()


def test_a_local_run_chosen_on_purpose_runs_here_where_sbatch_is(guard, danlu_env, tmp_path, monkeypatch, capsys):  # noqa: F811
    """cluster=local on the command line, or in the user's jobs/local/default.yaml, is a choice: it is kept. A default
    file choosing a Slurm cluster is followed; one without its `# @package _global_` line is refused saying so."""
    done = danlu_inprocess(["submit", *TINY, "cluster=local", "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0 and "error" not in done.stderr, done.stderr
    assert "#SBATCH --partition" not in done.stdout  # the local cluster
    here = user_default(tmp_path / "here", "# @package _global_\ndefaults:\n  - override /cluster: local\n")
    done = danlu_inprocess(["submit", *TINY, "--config-dir", str(here), "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0 and "error" not in done.stderr, done.stderr
    assert "#SBATCH --partition" not in done.stdout  # the local cluster
    slurm = user_default(tmp_path / "slurm", "# @package _global_\ndefaults:\n  - override /cluster: example\n")
    done = danlu_inprocess(["submit", *TINY, "--config-dir", str(slurm), "--dry-run"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --partition=debug-4090-01" in done.stdout, done.stdout
    bare = user_default(tmp_path / "bare", "defaults:\n  - override /cluster: example\n")
    done = danlu_inprocess(["submit", *TINY, "--config-dir", str(bare), "--dry-run"], danlu_env, monkeypatch, capsys)
    assert_one_line_error(done)
    assert "`# @package _global_` (the first line)" in hint_of(done), done.stderr
    guard()


def test_without_sbatch_the_local_default_stays_silent(danlu_env, tmp_path):  # noqa: F811
    """A laptop (no sbatch on PATH): no cluster named is the local cluster, without a word."""
    empty = tmp_path / "no-slurm"
    empty.mkdir()
    done = danlu("submit", *TINY, "--dry-run", env=dict(danlu_env, PATH=str(empty)))
    assert done.returncode == 0, done.stderr
    assert not re.search(r"^(error|warning|hint):", done.stderr, re.M), done.stderr
    assert shutil.which("sbatch", path=str(empty)) is None


def test_options_of_an_experiment_need_no_cluster(guard, danlu_env, monkeypatch, capsys):  # noqa: F811
    """`danlu options experiment=...` runs nothing: it lists the program's flags wherever it is asked."""
    done = danlu_inprocess(["options", *TINY], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0 and "args.beta_dpo" in done.stdout, done.stderr
