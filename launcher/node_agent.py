"""The node agent as both sides see it: its configuration, which the login side pickles and every node of the job
unpickles and calls. The job side's parts (launcher/job/) do the work; this class only holds what was decided at
submit, so two agents are equal exactly when they would behave alike.

Shared by both sides: standard library only. Calling it is the one place where shared code enters the job side.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tokens in $DANLU_COMMAND that only the node knows; the planner writes them, the agent fills them in.
NODE_RANK, HEAD_ADDR, PORT, LOG_DIR = "@NODE_RANK@", "@HEAD_ADDR@", "@PORT@", "@LOG_DIR@"

# said at a requeue of a program whose progress nothing keeps (state/reasons.py reads it)
FROM_ZERO = "requeued to start again at step 0"

# Bump it whenever the node agent's pickled fields or the files between submit and job side change.
# A job submitted under another number is refused: its pickle may not load, or may load into the wrong fields.
JOB_PROTOCOL = 2

SHA256_VAR = "DANLU_AGENT_SHA256"
# PYTHONPATH entries into the run's frozen code (launcher/code/), which the agent puts before the job's own
CODE_PATH_VAR = "DANLU_CODE_PATH"
PROTOCOL_VAR = "DANLU_JOB_PROTOCOL"
VERSION_VAR = "DANLU_VERSION"
# what a script shows where the pickle's hash goes before the pickle exists (`danlu submit --dry-run`)
SHA256_PLACEHOLDER = "@AGENT_SHA256@"

# launch kinds whose one launcher per node starts the node's ranks (the others start one program per task)
PER_NODE_LAUNCHERS = ("accelerate", "torchrun")


@dataclass(frozen=True)
class NodeAgent:
    """What srun starts on every node (or every task) of a danlu job, pickled by submitit."""

    run_id: str  # "" in the one agent all tasks of an array share: each task's run is DANLU_RUN_ID
    launch_kind: str
    procs_per_node: int
    tasks_per_node: int
    max_requeues: int
    requeue_signal: str = "USR2"
    checkpoint_wait_s: float = 60.0  # after a time-limit/preemption warning, how long ranks may take to checkpoint
    grace_s: float = 120.0  # warn the ranks this long before the time limit (requeue.grace_s)
    stop_grace_s: float = 30.0  # SIGTERM to SIGKILL on this cluster (read at submit; Slurm's default KillWait)
    hang_timeout_s: float = 0.0  # no line from any training process of this node for this long: hung (0: never)
    hang_stacks: str = "auto"  # how a hung job's stacks are read first: auto (a tracer), faulthandler or off
    keep_progress: bool = False  # a LightningCLI run: resume it from the newest checkpoint (job/resume.py)
    progress_lost: bool = False  # a program with no checkpoint danlu knows of: a requeue restarts it from step 0

    @property
    def per_node_launcher(self) -> bool:
        """One launcher per node starts this node's ranks (torch elastic), rather than one program per task."""
        return self.launch_kind in PER_NODE_LAUNCHERS

    @property
    def local_ranks(self) -> int:
        """The training processes of one task while the program trains."""
        return self.procs_per_node if self.per_node_launcher else 1

    def __call__(self) -> int:
        from .job.agent import run_node

        return run_node(self)
