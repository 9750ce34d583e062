"""Every option of a run, once: a dataclass field with its type, default and help.

Validation (OmegaConf structured configs check types and unknown keys), the `--help` of
config groups and the docs all follow from these fields. Nothing here imports Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional


def opt(default: Any = None, help: str = "", factory: Any = None) -> Any:  # noqa: A002 - mirrors argparse
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class PartitionSpec:
    nodes: int = opt(1, "number of nodes in the partition")
    gpus_per_node: int = opt(0, "GPUs on each node")
    gpu_type: Optional[str] = opt(None, "GPU type as named in the gres (e.g. rtx4090, a10)")
    cpus_per_node: int = opt(1, "CPUs on each node")
    mem_per_node: Optional[str] = opt(None, "memory of each node, e.g. 64000M or 512G")
    max_time: Optional[str] = opt(None, "partition time limit (Slurm format), null for unlimited")


@dataclass
class ClusterSpec:
    name: str = opt("local", "name of the cluster profile")
    kind: str = opt("local", "local (run on this machine, no Slurm) or slurm")
    shared_fs: bool = opt(True, "login node and compute nodes share the filesystem (workdir/program checked at submit)")
    default_partition: Optional[str] = opt(None, "partition used when resources.partition is null")
    partitions: Dict[str, PartitionSpec] = opt(help="partitions of the cluster and their nodes", factory=dict)
    gres_with_type: bool = opt(True, "render --gres=gpu:TYPE:N when the GPU type is known (else --gres=gpu:N)")
    max_array_size: int = opt(1001, "Slurm MaxArraySize: larger sweeps are split into several arrays")
    account: Optional[str] = opt(None, "sbatch --account")
    qos: Optional[str] = opt(None, "sbatch --qos")
    runs_dir: str = opt("~/danlu-runs", "where run directories (scripts, logs, outputs) are created")


@dataclass
class ResourcesSpec:
    nodes: int = opt(1, "number of nodes")
    gpus_per_node: int = opt(0, "GPUs per node (0 for a CPU job)")
    gpu_type: Optional[str] = opt(None, "GPU type; null means the partition's type")
    cpus_per_gpu: int = opt(8, "CPUs per GPU; cpus_per_task follows from it unless set")
    cpus_per_task: Optional[int] = opt(None, "CPUs per Slurm task; null derives it from cpus_per_gpu")
    mem: Optional[str] = opt(None, "memory per node, e.g. 64G; null for the partition default")
    time: str = opt("01:00:00", "time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
    partition: Optional[str] = opt(None, "partition; null for the cluster's default partition")
    exclude: Optional[str] = opt(None, "nodes to avoid (sbatch --exclude)")
    constraint: Optional[str] = opt(None, "node features (sbatch --constraint)")
    extra_sbatch: List[str] = opt(help="more sbatch options, e.g. ['--reservation=x']", factory=list)


@dataclass
class EnvSpec:
    kind: str = opt("none", "none, uv (envs/NAME/.venv or path), venv (path) or conda (name or path)")
    name: Optional[str] = opt(None, "uv: the environment envs/NAME; conda: the environment name")
    path: Optional[str] = opt(None, "explicit path of the venv or conda prefix")
    vars: Dict[str, str] = opt(help="variables exported in the job (values are quoted)", factory=dict)
    pass_env: List[str] = opt(
        help="variables passed to the job by name only, never written down (secrets)",
        factory=lambda: ["HF_TOKEN", "WANDB_API_KEY", "HUGGING_FACE_HUB_TOKEN"],
    )
    setup: List[str] = opt(
        help="shell lines run before activation, e.g. 'module load cuda/12.1' (not quoted)", factory=list
    )


@dataclass
class LaunchSpec:
    kind: str = opt("accelerate", "accelerate, torchrun, lightning or python")
    mixed_precision: Optional[str] = opt(
        None,
        "no, fp16 or bf16: accelerate launch --mixed_precision, "
        "and the program's own --mixed_precision where it declares one",
    )
    extra_args: List[str] = opt(help="extra arguments for the launcher itself", factory=list)
    python: str = opt("python", "interpreter for lightning/python launch and for the program")
    port: Optional[int] = opt(
        None,
        "rendezvous port; null: a free one picked at random (15000-31999, tried with a real bind) on the head node "
        "when the job starts; a number: that port for every Slurm job (a local run always picks a free one)",
    )
    tasks_per_node: Optional[int] = opt(
        None, "srun tasks per node; null: 1 for accelerate/torchrun, one per GPU otherwise"
    )
    hang_timeout_s: Optional[int] = opt(
        1800,
        "end the job as hung when no training process of a node has written a line for this many seconds; null: never",
    )
    hang_stacks: str = opt(
        "auto",
        "before a hung job ends, record every rank's Python stacks: auto (py-spy from the job's environment where it "
        "can attach, else faulthandler, which ends the rank), faulthandler (never a tracer) or off",
    )


@dataclass
class RequeueSpec:
    enabled: bool = opt(True, "submit with --requeue and resubmit after time-limit warning or preemption")
    max_requeues: int = opt(3, "requeues danlu asks for before letting the job end")
    signal: str = opt("USR2", "signal Slurm sends before the time limit (sbatch --signal)")
    grace_s: int = opt(120, "seconds between that signal and the time limit")


@dataclass
class CodeSpec:
    freeze: bool = opt(
        True,
        "run the workdir's code as it was at submit (tracked and untracked files git does not ignore, or every file "
        "outside git), from a snapshot shared by the runs; false: the job runs whatever the workdir holds then",
    )
    max_file_mb: float = opt(10.0, "a larger file is left out of the snapshot (a warning names it; .danluignore)")
    max_total_mb: float = opt(200.0, "a larger snapshot is refused, naming its largest files")
    max_files: int = opt(20_000, "a workdir with more files to freeze is refused (a home or data folder by mistake)")


@dataclass
class SweepSpec:
    max_parallel: Optional[int] = opt(None, "at most this many runs of an array at once (--array=...%P)")


@dataclass
class NotifySpec:
    url: Optional[str] = opt(
        None,
        "where the webhook URL is, never the URL itself: env:NAME (a variable of the "
        "submitting shell) or file:PATH (a file only you may read); null: no webhook",
    )
    format: str = opt(
        "json", "body of the webhook's messages: json, slack (and Slack-compatible), feishu (Lark) or dingtalk"
    )
    on_failure: bool = opt(True, "a message for each run that fails (its reason and the last lines of its log)")
    summary: bool = opt(True, "a message when the whole sweep has ended, sent by a small job that depends on it")
    email: Optional[str] = opt(
        None, "mail address for Slurm's own mail (sbatch --mail-user): a run that fails, the sweep's end"
    )
    summary_time: str = opt("00:10:00", "time limit of the summary job")


@dataclass
class RunSpec:
    """The composed config of one run, validated. `danlu show` prints exactly this."""

    name: Optional[str] = opt(None, "sweep name; null for <experiment>-<short id>")
    experiment: str = opt("none", "name of the experiment")
    program: Optional[str] = opt(None, "the training program, relative to workdir")
    program_args: List[str] = opt(help="positional arguments before args (e.g. ['fit'])", factory=list)
    args: Dict[str, Any] = opt(
        help="program options rendered as --key=value (true: a bare flag; false, null: omitted; with "
        "launch=lightning --key=true/false; a mapping: --key.sub=value, LightningCLI style)",
        factory=dict,
    )
    arg_lists: Dict[str, str] = opt(
        help="how a list in args.KEY is rendered: comma (--KEY=a,b), repeat (--KEY=a "
        "--KEY=b) or spaced (--KEY a b); set from the program's flags when they are "
        "read (nargs: spaced, append and LightningCLI's --config: repeat)",
        factory=dict,
    )
    workdir: str = opt(".", "directory the program runs in")
    output_arg: Optional[str] = opt(
        None, "name of the program's output-dir option; danlu points it at the run's output dir when unset"
    )
    own_folders: bool = opt(
        True,
        "LightningCLI programs (launch=lightning, program_args [fit]): each run writes the checkpoint and log folders "
        "its config names under its own output dir, through an extra --config danlu writes after the program's; "
        "false (submit --reuse-output): where the config names them, shared by every run",
    )
    cluster: ClusterSpec = opt(help="cluster profile", factory=ClusterSpec)
    resources: ResourcesSpec = opt(help="resources of each job", factory=ResourcesSpec)
    env: EnvSpec = opt(help="job environment", factory=EnvSpec)
    launch: LaunchSpec = opt(help="how ranks are started", factory=LaunchSpec)
    requeue: RequeueSpec = opt(help="time limits and preemption", factory=RequeueSpec)
    sweep: SweepSpec = opt(help="sweep settings", factory=SweepSpec)
    code: CodeSpec = opt(help="the code each run trains: frozen at submit (launcher/code/)", factory=CodeSpec)
    notify: NotifySpec = opt(help="messages when runs fail and when the sweep ends", factory=NotifySpec)


def describe(cls: type, prefix: str = "") -> List[tuple[str, str, str]]:
    """(dotted key, default, help) for every option, for `danlu options` and docs."""
    rows: List[tuple[str, str, str]] = []
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        inner = f.type if isinstance(f.type, type) else None
        default = f.default_factory() if callable(f.default_factory) else f.default
        if is_dataclass(default):
            rows.extend(describe(type(default), key + "."))
            continue
        rows.append((key, repr(default), f.metadata.get("help", "")))
        del inner
    return rows
