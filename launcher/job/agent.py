"""The node agent's run: what every node (or task) of a danlu job does with its pickled configuration
(launcher/node_agent.py), through `python -m launcher.job` (submitit's job-side runner).

On each node it:
  * works out node rank, head address and rendezvous port, and fills them into $DANLU_COMMAND (job/node_env.py);
  * starts that command (accelerate launch / torchrun / the program) in its own process group and copies its output
    to this restart's log dir (launcher/layout.py), one file per node and, where the launcher supports it, one per
    rank, plus its own lines (job/supervise.py, job/agent_log.py);
  * forwards Slurm's signals as the stop policy says (job/stops.py, job/stop_policy.py) and ends a hung program
    (job/watchdog.py);
  * agrees with the other nodes through files (job/peers.py), and after a warning task 0 asks Slurm to requeue the
    job, up to requeue.max_requeues times (job/requeue.py).

Never import torch or accelerate here: the agent runs in danlu's own light interpreter.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from .. import __version__
from ..layout import AttemptLayout, RestartLayout, RunLayout, log_per_task
from ..node_agent import NodeAgent
from .agent_log import AgentLog, Say
from .environment import Recorder, interpreter
from .node_env import TaskIds, describe_executable, launcher_env, node_argv, task_ids, world_size
from .peers import record_outcome
from .port import job_port
from .proctree import become_subreaper
from .requeue import requeue_when_all_stopped, stopped_from_outside
from .resume import newest_checkpoint, resume_dirs, with_python_path
from .start_state import StartState
from .supervise import supervise
from .timed_log import RankFiles, TimedLog


@dataclass(frozen=True)
class Start:
    """Where one start of this task writes, and who it is."""

    ids: TaskIds
    attempt: int
    restart: int
    run: RunLayout
    files: AttemptLayout
    logs: RestartLayout
    tag: str


def open_start(agent: NodeAgent) -> Start:
    """This task's place and folders; every node's agent makes the run's folders (whichever starts first)."""
    ids = task_ids()
    attempt = int(os.environ.get("DANLU_ATTEMPT", "1"))
    restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    run = RunLayout(Path(os.environ["DANLU_RUN_DIR"]))
    for folder in run.dirs():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = run.attempt(attempt)
    logs = files.restart(restart)
    logs.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    tag = logs.tag(log_per_task(agent.launch_kind, agent.tasks_per_node), ids.rank, ids.node)
    return Start(ids, attempt, restart, run, files, logs, tag)


def run_node(agent: NodeAgent) -> int:
    """One start of this task: run the program, record its outcome, requeue the job when it was stopped for one."""
    become_subreaper()  # ranks whose launcher died are re-parented here, so none is ever left behind
    start = open_start(agent)
    ids, logs = start.ids, start.logs
    head = os.environ.get("DANLU_HEAD_ADDR", "127.0.0.1")
    port = job_port()
    argv = node_argv(os.environ["DANLU_COMMAND"], ids.node, head, port, logs.launcher_logs(start.tag))
    state = StartState(start.tag, os.environ.get("SLURMD_NODENAME") or socket.gethostname(), world_size(agent, ids))
    env = launcher_env(agent, ids, head, port)
    agent_log = logs.agent_log(start.tag)
    with open(agent_log, "ab", buffering=0) as alog, TimedLog(logs.log(start.tag)) as out:
        say = AgentLog(alog, start.tag, state.node_name).say
        say(
            f"run {agent.run_id or os.environ.get('DANLU_RUN_ID', '?')} attempt {start.attempt} restart "
            f"{start.restart}: node {ids.node}/{ids.nodes} task {ids.rank}/{ids.ntasks} head {head} port {port}"
        )
        if agent.keep_progress:
            argv = resume(argv, start, say)
            with_python_path(env)
        say("command: " + shlex.join(argv))
        say("launcher: " + describe_executable(argv[0], env.get("PATH")))
        say(f"job side: danlu {__version__} from {Path(__file__).resolve().parents[1]}")
        ranks = RankFiles(logs.launcher_logs(start.tag), logs.rank_log, ids.node * agent.procs_per_node)
        try:
            code = supervise(agent, state, argv, env, out, say, logs, environment_recorder(start, argv, env, say))
        finally:
            ranks.close()
        conclude(start, state, code, say)
    requeued = (
        state.interrupted
        and ids.rank == 0
        and requeue_when_all_stopped(agent, state, start.restart, logs, ids.ntasks, agent_log)
    )
    code = task_exit_code(state, code, requeued, ids.rank)
    if code != 0:
        # a non-zero exit of any task makes srun end the whole step (--kill-on-bad-exit)
        sys.stdout.flush()
        os._exit(code)
    return code


def environment_recorder(start: Start, argv: List[str], env: Dict[str, str], say: Say) -> Optional[Recorder]:
    """Task 0 records, once per start, the environment its program runs in: the command's python, else the job's."""
    if start.ids.rank != 0:
        return None
    workdir = os.environ.get("DANLU_WORKDIR") or os.getcwd()
    return Recorder(interpreter(argv, env.get("PATH")), workdir, start.logs.environment, say)


def conclude(start: Start, state: StartState, code: int, say: Say) -> None:
    """Task 0 judges a stop from outside and writes the start's result; every task records its outcome."""
    if start.ids.rank == 0 and not state.interrupted:
        outside = stopped_from_outside(code, start.logs, start.ids.ntasks, state)
        if outside:
            say(f"{outside}: this start did not complete; requeueing it")
            state.interrupted = True
    if start.ids.rank == 0:
        start.files.write_result(
            {"exit_code": code, "ended": time.time(), "restart": start.restart, "interrupted": state.interrupted}
        )
    say(f"exit code {code}" if not state.peer_failed else f"exit code 0 (launcher {code}; another task failed)")
    record_outcome(start.logs, state, code)


def task_exit_code(state: StartState, code: int, requeued: bool, rank: int) -> int:
    """This task's exit code for srun. A task stopped by a signal exits 0 whatever the launcher's own code: a non-zero
    exit would make srun kill the other nodes' tasks while they may still be writing their checkpoint (the tasks not
    signalled stop their ranks themselves on this task's `stopped-*` file, job/peers.py), and would leave slurmctld a
    step signal to retry into the requeued job's next start (seen on 22.05). Task 0, or the task that failed first,
    says how the job ended."""
    if state.stopping() and (requeued or rank != 0):
        return 0
    if state.peer_failed:
        return 0  # not a second failure: a non-zero exit would make srun stop the failed task mid-report
    if state.interrupted and code == 0:
        return 1  # stopped early and not requeued (requeue.max_requeues): the run did not complete
    return code


def resume(argv: List[str], start: Start, say: Say) -> List[str]:
    """argv with `--ckpt_path` of the newest checkpoint of the run, if it has one; task 0 records which."""
    found = newest_checkpoint(start.run.stop_checkpoint, resume_dirs(start.run.lightning_config(start.attempt)))
    if found is None:
        say("no checkpoint of this run yet: training starts at step 0")
    else:
        at = f" (step {found['step']})" if found.get("step") is not None else ""
        say(f"resuming from {found['what']}{at}: {found['path']}")
    if start.ids.rank == 0:
        start.logs.resumed_from.write_text(json.dumps(found))
    return argv if found is None else argv + [f"--ckpt_path={found['path']}"]
