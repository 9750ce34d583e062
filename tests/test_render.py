"""Golden-file tests of rendered sbatch scripts, and every config composing and rendering."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from danlu_helpers import GOLDEN_ENV, REPO, plan_experiment, render_experiment

GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "diffusion_dpo": ["experiment=diffusion_dpo", "cluster=testcluster"],
    "diffusion_dpo_2node": ["experiment=diffusion_dpo", "cluster=example", "resources.nodes=2"],
    "ibq": ["experiment=ibq", "cluster=example"],
    "vqgan": ["experiment=vqgan", "cluster=example"],
    "tiny_dpo": ["experiment=tiny_dpo", "cluster=testcluster", "resources.nodes=2", "resources.gpus_per_node=2"],
    "tiny_ibq_lightning": [
        "experiment=tiny_ibq",
        "cluster=testcluster",
        "launch=lightning",
        "resources.gpus_per_node=2",
    ],
    "tiny_dpo_notify": [
        "experiment=tiny_dpo",
        "cluster=testcluster",
        "notify.url=env:DANLU_WEBHOOK",
        "notify.format=slack",
        "notify.email=me@example.org",
    ],
    "tiny_dpo_torchrun": ["experiment=tiny_dpo", "cluster=testcluster", "launch=torchrun", "resources.gpus_per_node=2"],
}


@pytest.fixture(autouse=True)
def _fixed_paths(monkeypatch):
    for var, value in GOLDEN_ENV.items():
        monkeypatch.setenv(var, value)
    monkeypatch.chdir(REPO)


def golden_mismatch(name: str, golden_dir: Path = GOLDEN) -> str:
    """'' when the rendered script of CASES[name] is its golden file, else what is wrong. Never writes."""
    scripts = render_experiment(CASES[name])
    if len(scripts) != 1:
        return f"{name} rendered {len(scripts)} scripts, not 1"
    path = golden_dir / f"{name}.sh"
    if not path.exists():
        return f"golden file {path} is missing (regenerate with: python tests/update_golden.py {name})"
    if scripts[0] != path.read_text():
        return (
            f"rendered script differs from {path} (if intended: python tests/update_golden.py {name}; review git diff)"
        )
    return ""


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_script(name):
    problem = golden_mismatch(name)
    assert not problem, problem


def test_a_missing_golden_file_fails_and_is_not_written(tmp_path):
    assert set(p.stem for p in GOLDEN.glob("*.sh")) == set(CASES)  # every case has one, no stale ones
    problem = golden_mismatch("tiny_dpo", golden_dir=tmp_path)
    assert "is missing" in problem, problem
    assert list(tmp_path.iterdir()) == []  # the test wrote nothing
    (tmp_path / "tiny_dpo.sh").write_text((GOLDEN / "tiny_dpo.sh").read_text().replace("--nodes=2", "--nodes=3"))
    assert "differs" in golden_mismatch("tiny_dpo", golden_dir=tmp_path)


def test_diffusion_dpo_script_has_what_researchers_write_by_hand():
    script = render_experiment(CASES["diffusion_dpo"])[0]
    assert "#SBATCH --partition=debug-4090-01" in script
    assert "#SBATCH --gres=gpu:rtx4090:4" in script
    assert "#SBATCH --cpus-per-task=32" in script  # 8 CPUs per GPU, one accelerate task per node
    assert "scontrol show hostnames" in script  # head-node discovery
    assert "srun --kill-on-bad-exit=1" in script
    command = shlex.split(script.split("export DANLU_COMMAND=", 1)[1].splitlines()[0])[0]
    argv = shlex.split(command)
    assert argv[:2] == ["accelerate", "launch"]
    assert "--beta_dpo=5000" in argv and "--scale_lr" in argv and "--learning_rate=1e-08" in argv
    assert argv[argv.index("--mixed_precision") + 1] == "fp16"
    assert "--pretrained_model_name_or_path=runwayml/stable-diffusion-v1-5" in argv
    assert "export HF_DATASETS_OFFLINE=1" in script
    assert "--output_dir=/runs/golden/0/output" in argv


def test_port_is_per_job_not_fixed():
    script = render_experiment(CASES["diffusion_dpo"])[0]
    assert "DANLU_PORT=$(<python> -I -m launcher.job.port) ||" in script  # picked free on the head node
    assert "29415" not in script and "29500" not in script
    fixed = render_experiment(CASES["diffusion_dpo"] + ["launch.port=29600"])[0]
    assert "export DANLU_PORT=29600" in fixed and "launcher.job.port" not in fixed


def test_multi_node_accelerate_uses_static_rendezvous():
    script = render_experiment(CASES["diffusion_dpo_2node"])[0]
    argv = shlex.split(shlex.split(script.split("export DANLU_COMMAND=", 1)[1].splitlines()[0])[0])
    assert argv[argv.index("--num_machines") + 1] == "2"
    assert argv[argv.index("--num_processes") + 1] == "8"
    assert argv[argv.index("--machine_rank") + 1] == "@NODE_RANK@"
    assert argv[argv.index("--rdzv_backend") + 1] == "static"


def test_lightning_runs_one_task_per_gpu():
    script = render_experiment(CASES["ibq"])[0]
    assert "#SBATCH --ntasks-per-node=8" in script and "#SBATCH --nodes=2" in script
    assert "--gres=gpu:a10:8" in script
    assert "main.py fit --config=configs/IBQ/gpu/imagenet_ibqgan_1024.yaml" in script


def _all_experiments():
    return sorted(p.stem for p in (REPO / "jobs" / "experiment").glob("*.yaml"))


def _all_options(group):
    return sorted(p.stem for p in (REPO / "jobs" / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", _all_experiments())
@pytest.mark.parametrize("cluster", _all_options("cluster"))
def test_every_experiment_composes_and_renders_on_every_cluster(experiment, cluster):
    from launcher.errors import UserError

    overrides = [f"experiment={experiment}", f"cluster={cluster}"]
    try:
        scripts = render_experiment(overrides)
    except UserError as e:
        # only shape limits may refuse: the local cluster has one node, the test cluster one A10 node
        assert "nodes" in e.message, e.message
        scripts = render_experiment(overrides + ["resources.nodes=1"])
    assert scripts and scripts[0].startswith("#!/bin/bash")


@pytest.mark.parametrize("group", ["resources", "env", "launch"])
def test_every_group_option_composes(group):
    for option in _all_options(group):
        scripts = render_experiment(["experiment=tiny_dpo", "cluster=example", f"{group}={option}"])
        assert "#SBATCH --job-name=" in scripts[0], (group, option)


def test_values_reaching_the_shell_are_quoted():
    script = render_experiment(
        ["experiment=tiny_dpo", "cluster=testcluster", "+args.name='x; rm -rf ~ $(id)'", "+env.vars.NOTE='a b;c'"]
    )[0]
    assert "export NOTE='a b;c'" in script
    line = script.split("export DANLU_COMMAND=", 1)[1].splitlines()[0]
    (command,) = shlex.split(line)
    assert "--name=x; rm -rf ~ $(id)" in shlex.split(command)


def test_sweep_with_two_shapes_gives_two_arrays():
    scripts = render_experiment(
        ["experiment=tiny_dpo", "cluster=testcluster", "resources.nodes=1,2", "args.seed=1,2,3"], multirun=True
    )
    assert len(scripts) == 2
    assert all("#SBATCH --array=0-2" in s for s in scripts)


def test_runs_share_an_array_exactly_when_their_job_text_agrees():
    base = ["experiment=tiny_dpo", "cluster=testcluster", "resources.gpus_per_node=1"]
    # with a GPU type the two settings render different --gres lines: two arrays
    jobs = plan_experiment(base + ["cluster.gres_with_type=true,false", "args.seed=1,2"], multirun=True)
    assert sorted(len(j.runs) for j in jobs) == [2, 2]
    assert sorted(line for j in jobs for line in j.script.splitlines() if "--gres" in line) == [
        "#SBATCH --gres=gpu:1",
        "#SBATCH --gres=gpu:rtx4090:1",
    ]
    # an option the job text does not show (the GPU type is known either way on a CPU job) does not split it
    jobs = plan_experiment(
        ["experiment=tiny_dpo", "cluster=testcluster", "cluster.gres_with_type=true,false"], multirun=True
    )
    assert [len(j.runs) for j in jobs] == [2]
    # what runs (program args, launcher) is per run, inside one array
    jobs = plan_experiment(base + ["args.seed=1,2", "launch.mixed_precision=no,fp16"], multirun=True)
    assert [len(j.runs) for j in jobs] == [4]
    # environment, time and sbatch options are the job's
    for sweep in (
        ["resources.time=00:10:00,00:20:00"],
        ["+env.vars.X=a,b"],
        ["sweep.max_parallel=1,2"],
        ["resources.extra_sbatch=[--hold],[]"],
    ):
        jobs = plan_experiment(base + sweep, multirun=True)
        assert [len(j.runs) for j in jobs] == [1, 1], sweep


def test_arrays_split_at_the_clusters_max_array_size():
    jobs = plan_experiment(
        ["experiment=tiny_dpo", "cluster=testcluster", "cluster.max_array_size=4", "+args.point=range(0,9)"],
        multirun=True,
    )
    assert [len(j.runs) for j in jobs] == [4, 4, 1]
    assert [j.plan.array for j in jobs] == ["0-3", "0-3", None]
    assert [r.run_id for j in jobs for r in j.runs] == [f"golden/{i}" for i in range(9)]


def test_sweep_over_lists_with_quoted_elements_gives_plain_strings():
    from launcher.spec.compose import Composer

    cfgs = Composer().runs(
        [
            "experiment=tiny_dpo",
            "cluster=local",
            "resources.extra_sbatch=[--hold],[--hold,'--begin=now+1hour']",
            "+args.note='a=b',plain",
        ],
        True,
    )
    got = sorted((tuple(c.spec.resources.extra_sbatch), c.spec.args["note"]) for c in cfgs)
    assert got == [
        (("--hold",), "a=b"),
        (("--hold",), "plain"),
        (("--hold", "--begin=now+1hour"), "a=b"),
        (("--hold", "--begin=now+1hour"), "plain"),
    ]
    assert (
        "resources.extra_sbatch=[--hold,--begin\\=now+1hour]" in cfgs[-1].overrides
        or "resources.extra_sbatch=[--hold,--begin\\=now+1hour]" in cfgs[-2].overrides
    )


def test_interpolations_take_the_overridden_values(tmp_path):
    """Hydra's semantics: a value override comes first, interpolations are resolved after it. danlu composes once
    per choice of config groups and patches value overrides in (fast for big sweeps); a value interpolating an
    overridden key, directly or through another interpolation, is resolved again for that run."""
    from launcher.spec.compose import Composer

    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "tagged.yaml").write_text(
        "# @package _global_\nexperiment: tagged\nworkdir: ${danlu_examples:}/tiny_dpo\nprogram: train.py\n"
        "args:\n  learning_rate: 1e-5\n  seed: 0\n"
        "env:\n  vars:\n    RUN_TAG: lr${args.learning_rate}\n    SEED: ${args.seed}\n"
        "    BOTH: ${env.vars.RUN_TAG}-s${args.seed}\n"
    )
    composer = Composer(str(tmp_path))
    (base,) = composer.runs(["experiment=tagged", "cluster=testcluster"])
    assert base.spec.env.vars == {"RUN_TAG": "lr1e-05", "SEED": "0", "BOTH": "lr1e-05-s0"}
    runs = composer.runs(
        ["experiment=tagged", "cluster=testcluster", "args.learning_rate=0.1,0.2", "args.seed=7"], multirun=True
    )
    assert [r.spec.env.vars for r in runs] == [
        {"RUN_TAG": "lr0.1", "SEED": "7", "BOTH": "lr0.1-s7"},
        {"RUN_TAG": "lr0.2", "SEED": "7", "BOTH": "lr0.2-s7"},
    ]
    (own,) = composer.runs(["experiment=tagged", "cluster=testcluster", "env.vars.RUN_TAG=mine", "args.seed=3"])
    assert own.spec.env.vars == {"RUN_TAG": "mine", "SEED": "3", "BOTH": "mine-s3"}  # a value set outright stays
    assert own.spec.workdir.endswith("/examples/tiny_dpo")  # resolvers untouched
