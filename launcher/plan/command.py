"""What each node runs: the program's argv and the launcher around it (accelerate, torchrun, or the
program itself per task). The node agent fills in the tokens only a node knows (launcher/job/node_env.py):
@NODE_RANK@, @HEAD_ADDR@, @PORT@, @LOG_DIR@."""

from __future__ import annotations

import json
import shlex
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..code.run_code import NO_CODE, RunCode
from ..layout import launcher_rank_logs
from ..node_agent import HEAD_ADDR, LOG_DIR, NODE_RANK, PORT
from ..spec.options import RunSpec
from ..spec.validate import Shape


def _arg_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(_arg_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _flat(args: Dict[str, Any], prefix: str = "") -> Iterator[Tuple[str, Any]]:
    """A nested mapping as dotted keys (LightningCLI/jsonargparse's --trainer.devices=2)."""
    for key, value in args.items():
        if isinstance(value, dict) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _with_extra_config(args: Dict[str, Any], extra_config: str) -> Dict[str, Any]:
    """args with danlu's `--config` after the program's own (first of all when it has none), before any other key."""
    given = args.get("config")
    configs = list(given) if isinstance(given, (list, tuple)) else [] if given in (None, False) else [given]
    return {"config": configs + [extra_config], **{k: v for k, v in args.items() if k != "config"}}


def _frozen_args(args: Dict[str, Any], code: RunCode, output_arg: Optional[str]) -> Dict[str, Any]:
    """args whose values name frozen files (a --config file of the workdir) as their frozen copies; never the output
    arg."""
    if code.tree is None:
        return args
    out: Dict[str, Any] = {}
    for key, value in args.items():
        if key == output_arg:
            out[key] = value
        elif isinstance(value, str):
            out[key] = code.in_tree(value)
        elif isinstance(value, (list, tuple)):
            out[key] = [code.in_tree(v) if isinstance(v, str) else v for v in value]
        else:
            out[key] = value
    return out


def program_argv(
    spec: RunSpec, output_dir: str, extra_config: Optional[str] = None, code: RunCode = NO_CODE
) -> List[str]:
    """`program program_args... --key=value ...`: true is a bare flag, false and null are left out (launch=lightning:
    --key=true / --key=false, as jsonargparse reads them), a mapping is
    dotted keys, a list one value (a,b), one flag per item or items after the flag, as spec.arg_lists says.
    `extra_config`: a LightningCLI run's extra config file (spec/lightning.extra_config), one more `--config`.
    `code`: the run's frozen code: the program and the files its arguments name come from there."""
    argv = [code.in_tree(str(spec.program))] + [code.in_tree(str(a)) for a in spec.program_args]
    args = _frozen_args(dict(spec.args), code, spec.output_arg)
    lists = dict(spec.arg_lists)
    if spec.output_arg and args.get(spec.output_arg) is None:
        args[spec.output_arg] = output_dir
    if extra_config:
        args = _with_extra_config(args, extra_config)
        lists["config"] = "repeat"  # LightningCLI reads one file per --config
    # jsonargparse (LightningCLI) takes a boolean's value and never a bare flag: false must override a config's true
    spelled = spec.launch.kind == "lightning"
    for key, value in _flat(args):
        if value is None or (value is False and not spelled):
            continue
        style = lists.get(key, "comma") if isinstance(value, (list, tuple)) else "comma"
        if isinstance(value, bool) and spelled:
            argv.append(f"--{key}={'true' if value else 'false'}")
        elif value is True:
            argv.append(f"--{key}")
        elif style == "repeat":
            argv.extend(f"--{key}={_arg_value(v)}" for v in value)
        elif style == "spaced":
            argv.extend([f"--{key}"] + [_arg_value(v) for v in value])
        else:
            argv.append(f"--{key}={_arg_value(value)}")
    return argv


def launch_command(
    spec: RunSpec, shape: Shape, output_dir: str, extra_config: Optional[str] = None, code: RunCode = NO_CODE
) -> List[str]:
    """What each node agent starts (accelerate/torchrun per node; the program per task otherwise)."""
    prog = program_argv(spec, output_dir, extra_config, code)
    launch = spec.launch
    procs, nodes = shape.procs_per_node, shape.nodes
    if launch.kind == "accelerate":
        cmd = ["accelerate", "launch"]
        if procs * nodes > 1:
            cmd.append("--multi_gpu")  # also the multi-process path on CPU (gloo) when there is no GPU
        cmd += ["--num_machines", str(nodes), "--num_processes", str(procs * nodes)]
        if nodes > 1:
            cmd += ["--machine_rank", NODE_RANK, "--main_process_ip", HEAD_ADDR, "--rdzv_backend", "static"]
        cmd += ["--main_process_port", PORT]
        if launcher_rank_logs(launch.kind, procs * nodes):
            cmd += ["--log_dir", LOG_DIR, "--tee", "3"]  # torch elastic: one log per rank
        if launch.mixed_precision:
            cmd += ["--mixed_precision", str(launch.mixed_precision)]
        cmd += list(launch.extra_args)
        return cmd + prog
    if launch.kind == "torchrun":
        cmd = [
            "torchrun",
            "--nnodes",
            str(nodes),
            "--node_rank",
            NODE_RANK,
            "--nproc_per_node",
            str(procs),
            "--rdzv_backend",
            "static",
            "--rdzv_endpoint",
            f"{HEAD_ADDR}:{PORT}",
            "--master_addr",
            HEAD_ADDR,
            "--master_port",
            PORT,
            "--log-dir",
            LOG_DIR,
            "--tee",
            "3",
        ]
        return cmd + list(launch.extra_args) + prog
    # lightning / python: one process per srun task, the program itself
    return [launch.python] + list(launch.extra_args) + prog


DEBUGPY_PORT = 5678  # where rank 0 of `danlu debug --debugpy` waits for the debugger (VS Code's default)


def under_debugpy(spec: RunSpec, argv: List[str], prog: List[str]) -> List[str]:
    """A launch command (`argv`, ending with the program's `prog`) whose rank 0 starts under `python -m debugpy
    --listen 0.0.0.0:5678 --wait-for-client` and the other ranks as before. A per-node launcher starts a small bash
    wrapper instead of python (its --no-python), which picks by RANK; one program per task: the wrapper is the task."""
    head = argv[: len(argv) - len(prog)]
    if spec.launch.kind in ("accelerate", "torchrun"):
        python = ["python"]
        head.append("--no_python" if spec.launch.kind == "accelerate" else "--no-python")
    else:
        python, head = head, []  # launch.python and its own flags
    py = shlex.join(python)
    wrapper = (
        f'if [ "${{RANK:-0}}" = 0 ]; then exec {py} -Xfrozen_modules=off -m debugpy '
        f'--listen 0.0.0.0:{DEBUGPY_PORT} --wait-for-client "$@"; fi; exec {py} "$@"'
    )
    return head + ["bash", "-c", wrapper, "danlu-rank"] + prog
