"""What a request chooses without saying so: which cluster runs it (never the login node by default where Slurm is),
what the live cluster can hold (not only what its profile says), which of danlu's own keys exist, and what an
override's interpolation reads (the final config, as in Hydra)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from danlu_helpers import REPO, danlu, danlu_env, danlu_inprocess  # noqa: F401
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


@pytest.mark.slurm
def test_cluster_init_shows_a_default_file_that_works(slurm_cluster, danlu_env, tmp_path):  # noqa: F811
    """`danlu cluster init NAME` says how to make NAME the default: the file and its lines, `# @package _global_`
    first. Written as shown, a submit naming no cluster uses NAME."""
    env = dict(danlu_env, XDG_CONFIG_HOME=str(tmp_path / "config"))
    done = danlu("cluster", "init", "mine", env=env, check=True)
    said = done.stderr.splitlines()
    where = next(ln for ln in said if ln.startswith("make it your default: "))
    path = Path(where.split(": ", 1)[1].split(" with ")[0])
    assert path == tmp_path / "config" / "danlu" / "jobs" / "local" / "default.yaml", where
    lines = said[said.index(where) + 1 :]
    assert lines[:3] == ["  # @package _global_", "  defaults:", "    - override /cluster: mine"], said
    path.parent.mkdir(parents=True)
    path.write_text("".join(ln[2:] + "\n" for ln in lines[:3]))
    done = danlu("submit", *TINY, "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --partition=debug-4090-01" in done.stdout, done.stdout


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


# ---- danlu's own keys: a misspelled one is refused, with what it may mean --------------------------------------
@pytest.mark.parametrize(
    "override, meant",
    [
        ("resources.gpu=2", "resources.gpus_per_node"),
        ("+resources.gpu=2", "resources.gpus_per_node"),
        ("++resources.gpu=2", "resources.gpus_per_node"),
        ("resource.nodes=2", "resources"),
        ("+resource.nodes=2", "resources"),
        ("resource=a10x16", "resources"),
        ("+launch.pot=29500", "launch.port"),
        ("+requeue.max_requeue=1", "requeue.max_requeues"),
        ("notify.on_fail=false", "notify.on_failure"),
        ("env.varz.X=1", "env.vars"),
        ("cluster.partitions.debug-4090-01.gpus=2", "cluster.partitions.debug-4090-01.gpus_per_node"),
    ],
)
def test_a_misspelled_danlu_key_is_refused_with_what_it_may_mean(
    override,
    meant,
    guard,  # noqa: F811
    danlu_env,  # noqa: F811
    monkeypatch,
    capsys,
):
    """danlu's own options are the dataclasses of spec/options.py: a key none of them has would be ignored, so
    `key=` and `+key=` alike are refused, naming the close key instead of suggesting `+key=` to add it."""
    for extra in ([], ["--dry-run"]):
        done = danlu_inprocess(
            ["submit", *TINY, "cluster=testcluster", override, *extra], danlu_env, monkeypatch, capsys
        )
        err = assert_one_line_error(done)
        bad = override.lstrip("+").split("=")[0]
        assert "unknown key" in err and (bad in err or bad.split(".")[0] in err), err
        hint = hint_of(done)
        assert f"did you mean {meant}" in hint and "to add a new key" not in hint, hint
    guard()


def test_keys_under_the_users_own_mappings_keep_their_rules(guard, danlu_env, monkeypatch, capsys):  # noqa: F811
    """args.* (the program's flags, checked against its source), env.vars.*: added with `+` as before."""
    base = ["submit", *TINY, "cluster=local", "--dry-run"]
    done = danlu_inprocess([*base, "+env.vars.MY_FLAG=1", "resources.gpus_per_node=1"], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    assert "export MY_FLAG=1" in done.stdout or "MY_FLAG=1" in done.stdout, done.stdout
    done = danlu_inprocess([*base, "+args.beta_dop=1"], danlu_env, monkeypatch, capsys)
    assert "has no flag --beta_dop" in assert_one_line_error(done) and "--beta_dpo" in hint_of(done)
    done = danlu_inprocess([*base, "args.nope=1"], danlu_env, monkeypatch, capsys)
    assert "has no flag --nope" in assert_one_line_error(done)  # the program's rule, not danlu's
    guard()


# ---- an override's interpolation reads the final config --------------------------------------------------------
def flags(stdout: str, name: str):
    return re.findall(rf"--{name}=([^ '\n]+)", stdout)


def test_an_overrides_interpolation_reads_the_other_overrides(guard, danlu_env, monkeypatch, capsys):  # noqa: F811
    """As in Hydra, `args.output_dir=/tmp/lr${args.learning_rate}` resolves after every override: it reads the
    learning rate this run has, given before or after it, in a single run and in each run of a sweep."""
    interpolated = "args.output_dir=/tmp/lr${args.learning_rate}"
    for order in ([interpolated, "args.learning_rate=0.0003"], ["args.learning_rate=0.0003", interpolated]):
        done = danlu_inprocess(["submit", *TINY, "cluster=local", *order, "--dry-run"], danlu_env, monkeypatch, capsys)
        assert done.returncode == 0, done.stderr
        assert flags(done.stdout, "learning_rate") == ["0.0003"], done.stdout
        assert flags(done.stdout, "output_dir") == ["/tmp/lr0.0003"], done.stdout
    sweep = ["-m", *TINY, "cluster=local", interpolated, "args.learning_rate=1e-4,2e-4", "--dry-run"]
    done = danlu_inprocess(["submit", *sweep], danlu_env, monkeypatch, capsys)
    assert done.returncode == 0, done.stderr
    assert sorted(flags(done.stdout, "output_dir")) == ["/tmp/lr0.0001", "/tmp/lr0.0002"], done.stdout
    guard()


def test_an_interpolated_override_takes_its_keys_type_and_a_missing_reference_is_refused(guard, danlu_env):  # noqa: F811
    from launcher.errors import UserError
    from launcher.spec.compose import Composer

    base = [*TINY, "cluster=local"]
    (run,) = Composer().runs([*base, "resources.gpus_per_node=${args.seed}", "args.seed=2"])
    assert run.spec.resources.gpus_per_node == 2 and type(run.spec.resources.gpus_per_node) is int
    (run,) = Composer().runs([*base, "+args.lr_copy=${args.learning_rate}", "args.learning_rate=0.5"])
    assert run.spec.args["lr_copy"] == 0.5
    runs = Composer().runs([*base, "+env.vars.TAG=s${args.seed}", "args.seed=1,2"], multirun=True)
    assert [r.spec.env.vars["TAG"] for r in runs] == ["s1", "s2"]
    with pytest.raises(UserError, match="cannot resolve|unknown key|bad"):
        Composer().runs([*base, "args.output_dir=/tmp/${args.no_such_key}"])
    guard()


# ---- what the live cluster can hold: a stale profile is not left for sbatch to reject --------------------------
@pytest.mark.slurm
def test_a_request_the_live_cluster_cannot_hold_is_refused_though_the_profile_allows_it(
    slurm_cluster,
    guard,  # noqa: F811
    danlu_env,  # noqa: F811
    tmp_path,
):
    """A profile claiming 8 GPUs per node on debug-4090-01, whose live nodes have 4: 6 GPUs per node passes the
    profile, and sbatch would answer 'Requested node configuration is not available'. danlu refuses it (submit and
    --dry-run alike), naming the live value and the profile to update; 4 GPUs per node still go."""
    text = (REPO / "jobs" / "cluster" / "testcluster.yaml").read_text()
    stale = text.replace("name: testcluster", "name: stale").replace(
        "debug-4090-01: {nodes: 2, gpus_per_node: 4,", "debug-4090-01: {nodes: 2, gpus_per_node: 8,"
    )
    assert stale.count("gpus_per_node: 8") == 2, stale  # debug-4090-01 now, and debug-A10-01 as before
    configs = tmp_path / "configs"
    (configs / "cluster").mkdir(parents=True)
    (configs / "cluster" / "stale.yaml").write_text(stale)
    argv = ["submit", *TINY, "cluster=stale", "--config-dir", str(configs), "resources.partition=debug-4090-01"]
    for extra in ([], ["--dry-run"]):
        done = danlu(*argv, "resources.gpus_per_node=6", *extra, env=danlu_env)
        err = assert_one_line_error(done)
        assert "resources.gpus_per_node=6" in err and "have 4 GPUs on the live cluster" in err, err
        hint = hint_of(done)
        assert "at most 4 GPUs per node" in hint and "cluster/stale.yaml" in hint, hint
        assert "danlu cluster init stale --force" in hint, hint
    guard()
    done = danlu(*argv, "resources.gpus_per_node=4", "--dry-run", env=danlu_env)
    assert done.returncode == 0, done.stderr
    assert "gpus_per_node is 8 in the profile, 4 on the live cluster" in done.stderr  # still said, as a warning


def test_a_partition_of_mixed_nodes_takes_what_its_largest_node_holds():
    """The live check refuses only what no node can hold: debug-A10-01 (8x a10 on 2 nodes in the `example` profile)
    with live nodes of 4 and 8 a10s takes 8 GPUs on one node, not on two; a GPU type it lacks, a partition that is
    gone and more nodes than it has are refused."""
    from launcher import cluster_facts as cf
    from launcher.spec.compose import Composer
    from launcher.spec.validate import shape
    from launcher.submit.live_checks import beyond_the_live_cluster

    def facts(gres: str, partition: str = "debug-A10-01", nodes: str = "n[1-2]"):
        parts = cf.parse_partitions(f"PartitionName={partition} Nodes={nodes} MaxTime=2-00:00:00 GraceTime=0\n")
        cf.add_nodes(parts, f"n1|{partition}|64|512000|gpu:{gres}:4|\nn2|{partition}|64|512000|gpu:{gres}:8|\n")
        return cf.ClusterFacts("22.05", 1001, 10000, 30, parts, {"max_submit_jobs": None, "max_jobs": None})

    def problem(live, *overrides: str) -> str:
        (run,) = Composer().runs([*TINY, "cluster=example", "resources.partition=debug-A10-01", *overrides])
        found = beyond_the_live_cluster(run.spec, shape(run.spec), live)
        return "" if found is None else f"{found.message} | {found.hint}"

    assert problem(facts("a10"), "resources.gpus_per_node=8") == ""  # n2 holds it
    assert problem(facts("a10"), "resources.gpus_per_node=8", "resources.nodes=2") == ""  # not checked per node
    said = problem(facts("a10", nodes="n1"), "resources.nodes=2")
    assert "has 1 node" in said and "on the live cluster" in said and "cluster/example.yaml" in said, said
    said = problem(facts("a100"), "resources.gpus_per_node=2")
    assert "unknown GPU type 'a10' on partition 'debug-A10-01' (it has a100) on the live cluster" in said, said
    said = problem(facts("a10", partition="gpu"), "resources.gpus_per_node=2")
    assert "unknown partition 'debug-A10-01'" in said and "partitions: gpu" in said, said
    old = facts("a100")
    old.partitions["debug-A10-01"].most_gpus = {}  # cached by a danlu that did not read the largest node
    assert problem(old, "resources.gpus_per_node=2") == ""
