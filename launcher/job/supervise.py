"""Supervising the program of one start: start the launcher in its own session, copy its output to the node's log
and to the task's stdout, watch for a failed rank, and end with nothing of it left behind.

Fails fast: a non-zero exit ends this task at once, and `srun --kill-on-bad-exit=1` then ends every other node's
task, so surviving ranks never wait for a dead peer. When torch elastic stops a node's ranks after one of them
failed, ranks still alive after FAILED_PEER_KILL_S are killed (torch elastic would give a rank blocked in a
collective 30 s).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Protocol

from ..layout import RestartLayout
from ..node_agent import NodeAgent
from . import slurm_calls
from .agent_log import Say, to_slurm_output
from .peers import watch_peers
from .proctree import Child, kill_program, kill_ranks_after, wait_descendants_gone
from .stacks_request import watch_stacks_requests
from .start_state import StartState
from .stop_policy import processes
from .stops import StopHandlers, ignore_warnings
from .timed_log import TimedLog
from .watchdog import ENDING_WAIT_S, watch_silence
from .world import WorldWatch

# a rank still alive this long after torch elastic began stopping the ranks of a failed node is killed
FAILED_PEER_KILL_S = 3.0
# a line of a rank copied by torch elastic into the launcher's output (--tee): `[default<local rank>]:`
LOCAL_LINE = re.compile(rb"^\[default\d+\]:")
# torch elastic (accelerate launch --multi_gpu, torchrun) logs this when it starts stopping its workers
ELASTIC_CLOSING = re.compile(rb"Sending process \d+ closing signal SIG|Closing process \d+ via signal SIG")
# ... and this first when a signal (Slurm's SIGTERM) made it stop them
ELASTIC_SIGNALLED = re.compile(rb"Received \d+ death signal")


class Beside(Protocol):
    """The agent's own work beside the launcher (task 0's environment record, job/environment.py)."""

    def start(self) -> None:
        """Begin, once the launcher runs: it never delays the launcher."""

    def wait(self, hurry: bool) -> None:
        """Wait for the end, before what is left of the program is killed (`hurry`: the job is being stopped)."""


def supervise(
    agent: NodeAgent,
    state: StartState,
    argv: List[str],
    env: Dict[str, str],
    out: TimedLog,
    say: Say,
    logs: RestartLayout,
    beside: Optional[Beside] = None,
) -> int:
    """Run the launcher to its end; its exit code (128 + the signal that ended it). `beside` runs while it does."""
    ignore_warnings(agent)
    try:
        child = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
    except FileNotFoundError as e:
        say(f"cannot start {argv[0]!r}: {e}")
        return 127
    if beside is not None:
        beside.start()
    end = slurm_calls.job_end_time() if agent.grace_s > 0 else None
    stops = StopHandlers(agent, state, child, logs, say, end)
    world = (
        WorldWatch(stops.ranks, lambda: child.poll() is None, agent.local_ranks)
        if state.world > 1 and agent.launch_kind != "python"
        else None
    )
    stops.install()
    state.last_output = time.time()
    if agent.hang_timeout_s > 0:
        threading.Thread(target=watch_silence, args=(agent, child, state, logs, say), daemon=True).start()
    threading.Thread(target=watch_peers, args=(child, logs, state, stops.warn, say), daemon=True).start()
    threading.Thread(target=watch_stacks_requests, args=(agent, child, state, logs, say), daemon=True).start()
    copy_output(agent, state, child, out, say, logs)
    code = child.wait()
    state.wait_ending(ENDING_WAIT_S)  # the watchdog's line before this task's end: it says why the ranks ended
    stops.handlers.close()
    if world is not None:
        code = world_verdict(world, code, state, say)
    wait_after_stop(agent, state, say)
    if beside is not None:
        beside.wait(hurry=state.stopping())  # before the kill below, which would end its processes too
    kill_program(child)  # nothing this agent started outlives the launcher
    if code < 0:
        code = 128 - code
    line = ending_line(code, state)
    if line:
        say(line)
    return code


def copy_output(
    agent: NodeAgent, state: StartState, child: Child, out: TimedLog, say: Say, logs: RestartLayout
) -> None:
    """Copy the launcher's output line by line until it closes; act on torch elastic stopping ranks after a failure."""
    assert child.stdout is not None
    reaping = signalled = False
    for chunk in iter(child.stdout.readline, b""):
        state.last_output = time.time()
        if not state.ranks_spoke and (
            not agent.per_node_launcher or agent.procs_per_node == 1 or LOCAL_LINE.match(chunk)
        ):
            state.ranks_spoke = True  # the hang clock runs from the ranks' first line (imports can be slow)
        out.write(chunk)
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        if ELASTIC_SIGNALLED.search(chunk):
            signalled = True  # Slurm's signal reached the launcher: what it closes next is no failure
        if not reaping and not signalled and not state.stopping() and ELASTIC_CLOSING.search(chunk):
            # (signalled: Slurm's signal reached this agent too; its handler stops the ranks, with the grace)
            reaping = True
            reap_after_failure(child, state, say, logs)


def reap_after_failure(child: Child, state: StartState, say: Say, logs: RestartLayout) -> None:
    """torch elastic stops this node's other ranks after one failed, and waits 30 s before SIGKILL; a rank blocked
    in a collective whose peer died (NCCL) never ends by itself meanwhile."""
    say(
        f"the launcher is stopping this node's ranks after a failure: SIGKILL for any still running "
        f"in {FAILED_PEER_KILL_S:.0f}s (not torch elastic's 30s)"
    )
    if not state.peer_failed and not logs.failed_count():
        # on record now, not when the launcher has exited: the other nodes end their ranks at once (job/peers.py)
        # rather than wait for them to break in a collective, or for srun
        logs.failed(state.tag).write_text("launcher reported a failed rank\n")
    threading.Thread(target=kill_ranks_after, args=(child, FAILED_PEER_KILL_S, state.stopping), daemon=True).start()


def world_verdict(world: WorldWatch, code: int, state: StartState, say: Say) -> int:
    """A program that exited 0 with ranks that never joined one process group did not train as planned: exit 3."""
    world.close()
    alone = world.alone()
    if code != 0 or not alone or state.stopping():
        return code
    line = (
        f"{len(alone)} of {len(world.seen)} {processes(len(world.seen))} on this node trained alone, "
        f"not in one world of {state.world} (no process group: pids {' '.join(map(str, alone))}); "
        f"the run is not complete"
    )
    say(line)
    to_slurm_output(line)
    return 3


def wait_after_stop(agent: NodeAgent, state: StartState, say: Say) -> None:
    """The launcher may end before its ranks have written their checkpoint: they keep the rest of the cluster's
    grace after a stop signal, and the checkpoint wait after a warning."""
    if state.stopped_by and state.kill_at:
        wait_descendants_gone(timeout=max(0.0, state.kill_at - time.time()))
    if state.interrupted:
        left = wait_descendants_gone(timeout=max(5.0, agent.checkpoint_wait_s))
        if left:
            said = "process" if len(left) == 1 else "processes"
            say(f"{len(left)} {said} still running {agent.checkpoint_wait_s:.0f}s after the signal: killed")


def ending_line(code: int, state: StartState) -> Optional[str]:
    """What the agent says of the launcher's exit: whether this task failed first or was stopped."""
    if state.peer_failed:
        return f"the launcher exited with code {code} after another task failed (this task did not fail)"
    if state.interrupted:
        return f"the training processes stopped for the time limit/preemption (launcher exit {code})"
    if code != 0 and state.stopped_by:
        # a consequence, not the cause: Slurm (a failed peer, scancel, the time limit) stopped this task
        return (
            f"the launcher exited with code {code} after {state.stopped_by} "
            "(this task was stopped; it did not fail first)"
        )
    if code != 0:
        # this task failed first (as far as it knows): say so, so the log shows where the job broke
        return f"the launcher exited with code {code}: ending the job (the other nodes are stopped by srun)"
    return None
