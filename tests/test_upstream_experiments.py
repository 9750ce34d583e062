"""Issue 14: the shipped experiments are true to the upstream programs they name.

tests/upstream/*.json hold facts read from the upstream sources (each with its repository and commit): every
flag's names, default, type, choices, action and nargs, the module-level imports, and the values of
DiffusionDPO's launchers/sd15.sh. A stand-in checkout declares exactly those flags with argparse, and the command
line danlu renders for each experiment must parse with it, to the values upstream runs with.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from danlu_helpers import REPO
from test_program_flags import UPSTREAM, fake_checkout

from launcher.plan.command import program_argv
from launcher.spec.compose import Composer
from launcher.spec.lightning import world_problem
from launcher.spec.program_args import verdict
from launcher.spec.validate import shape


def _spec(overrides: List[str]):
    (cfg,) = Composer().runs(["cluster=example", *overrides])
    return cfg.spec


def _parsed(checkout: Path, program: str, argv: List[str]) -> Dict[str, object]:
    """What the stand-in's argparse makes of danlu's command line (a failure is argparse's own message)."""
    script = checkout / program
    text = script.read_text()
    if "print_namespace" not in text:
        text = (
            "import json, sys\n"
            "def str2bool(v):\n    return str(v).lower() in ('yes', 'true', 't', 'y', '1')\n"
            + text
            + "\nprint(json.dumps(vars(args), default=str))  # print_namespace\n"
        )
        script.write_text(text)
    done = subprocess.run(
        [sys.executable, program, *argv[1:]], cwd=checkout, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _deps(env: str) -> set:
    import tomllib

    data = tomllib.loads((REPO / "envs" / env / "pyproject.toml").read_text())
    return {
        re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in data["project"]["dependencies"]
    }


DISTRIBUTION = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml", "tensorboardX": "tensorboardx"}


def test_diffusion_dpo_runs_train_py_as_upstream(tmp_path):
    data = json.loads((UPSTREAM / "diffusion_dpo_train.json").read_text())
    checkout = fake_checkout(tmp_path / "DiffusionDPO", "diffusion_dpo_train.json", "train.py")
    spec = _spec(["experiment=diffusion_dpo", f"workdir={checkout}"])
    problems, note = verdict(spec)
    assert (
        problems == [] and note == f"program args checked against the {len(data['flags'])} argparse flags of train.py"
    )
    parsed = _parsed(checkout, "train.py", program_argv(spec, "/runs/x/output"))
    sd15 = data["launcher_script"]["args"]
    for key, value in sd15.items():
        assert parsed[key] == value, (key, parsed[key], value)
    assert parsed["mixed_precision"] == "fp16" == spec.launch.mixed_precision  # the program's own flag wins
    assert parsed["output_dir"] == "/runs/x/output"
    assert parsed["resume_from_checkpoint"] == "latest"  # upstream's default: a restart resumes from checkpoint-*
    assert not set(data["launcher_script"]["shell_only"]) & set(spec.env.vars)  # never read by train.py


def test_vqgan_runs_main_py_as_upstream(tmp_path):
    data = json.loads((UPSTREAM / "taming_main.json").read_text())
    checkout = fake_checkout(tmp_path / "taming", "taming_main.json", "main.py")
    spec = _spec(["experiment=vqgan", f"workdir={checkout}"])
    problems, note = verdict(spec)
    assert problems == [] and "parse_known_args" in note  # unknown flags go on to OmegaConf: not refused
    longs = {o[2:] for f in data["flags"] for o in f["options"] if o.startswith("--")}
    for key in spec.args:  # rendered --KEY: an exact long option (a prefix like --t would be ambiguous upstream)
        assert key in longs or key in data["trainer_flags"], key
    argv = program_argv(spec, "/runs/x/output")
    parsed = _parsed(checkout, "main.py", argv)
    assert parsed["base"] == ["configs/imagenet_vqgan.yaml"] and parsed["train"] is True
    gpus = [g for g in str(spec.args["gpus"]).split(",") if g.strip()]
    # main.py starts one process per GPU itself (pytorch-lightning DDP): one task per node, every GPU in --gpus
    assert len(gpus) == spec.resources.gpus_per_node and shape(spec).tasks_per_node == 1


def test_ibq_asks_lightning_for_the_jobs_own_world():
    spec = _spec(["experiment=ibq"])
    sh = shape(spec)
    assert world_problem(spec, sh.nodes, sh.tasks_per_node) is None
    trainer = spec.args["trainer"]
    assert (trainer["devices"], trainer["num_nodes"]) == (sh.tasks_per_node, sh.nodes) == (8, 2)
    argv = program_argv(spec, "/runs/x/output")
    assert argv[:3] == ["main.py", "fit", "--config=configs/IBQ/gpu/imagenet_ibqgan_1024.yaml"]
    assert "--trainer.devices=8" in argv and "--trainer.num_nodes=2" in argv


@pytest.mark.parametrize("experiment, env", [("diffusion_dpo", "diffusion_dpo"), ("ibq", "ibq")])
def test_each_env_lists_what_its_program_imports(experiment, env):
    facts = json.loads((UPSTREAM / "imports.json").read_text())[experiment]
    needed = {
        DISTRIBUTION.get(m, m).lower().replace("_", "-") for m in facts["third_party"] + facts.get("run_time", [])
    }
    assert _spec([f"experiment={experiment}"]).env.name == env
    missing = needed - _deps(env)
    assert not missing, f"envs/{env}/pyproject.toml lacks {sorted(missing)} ({facts['repo']} @ {facts['commit'][:8]})"
