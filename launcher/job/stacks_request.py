"""`danlu stacks RUN` on the job's side: each agent watches the restart's `stacks-request` and answers a new request
with its ranks' stacks, read by the tracer only (faulthandler would end the ranks; the run goes on)."""

from __future__ import annotations

import time

from ..layout import RestartLayout
from ..node_agent import NodeAgent
from .agent_log import Say
from .proctree import Child
from .stacks import StacksWay, find_tracer, record_stacks
from .start_state import StartState
from .watchdog import node_ranks, tracer_for

# how often an agent looks for a request: one stat of a file that is usually missing
ASK_EVERY_S = 1.0
# one answer's limit: py-spy reads the ranks in parallel, each within stacks.TRACER_TIMEOUT_S
ANSWER_LIMIT_S = 15.0


def read_request(logs: RestartLayout) -> str:
    """The id of the latest request ("" without one)."""
    try:
        return logs.stacks_request.read_text().strip()
    except OSError:
        return ""


def watch_stacks_requests(agent: NodeAgent, child: Child, state: StartState, logs: RestartLayout, say: Say) -> None:
    """While the program runs: answer each new request once (a request made before this start is not answered)."""
    answered = read_request(logs)
    while child.poll() is None and not state.ending:
        time.sleep(ASK_EVERY_S)
        request = read_request(logs)
        if not request or request == answered or not request.isalnum():
            continue
        answered = request
        try:
            answer(agent, child, state, logs, say, request)
        except Exception as e:  # a request never harms the run
            say(f"the stacks asked for could not be recorded: {e!r}")


def answer(agent: NodeAgent, child: Child, state: StartState, logs: RestartLayout, say: Say, request: str) -> None:
    pids = node_ranks(agent, child, state.tag)
    path = logs.stacks_answer(request, state.tag)
    path.parent.mkdir(exist_ok=True)
    way = StacksWay(tracer_for(agent) or find_tracer, host=state.node_name)
    say(f"stacks asked for (request {request}): reading {len(pids)} training processes, which go on")
    record_stacks(pids, path, say, way, f"the training processes of {state.tag}", ANSWER_LIMIT_S)
