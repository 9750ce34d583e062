"""The hang watchdog: a rank blocked in a collective whose peer hangs never ends by itself (gloo and NCCL wait up
to 30 min). When no training process of this node has written a line for launch.hang_timeout_s, the job ends as
hung, once the Python stacks of its ranks are recorded (job/stacks.py) and the line that ends it says where they
were.

A hung node writes `hung-<tag>` in the restart's folder first: every other node's agent then records its own ranks'
stacks and ends them, and the hung node's line names the places of every rank it has a stacks file of. Those that
need faulthandler (which kills the rank it dumps) signal their ranks at one agreed time, and ranks that py-spy left
running are ended once every node has its stacks, so that no node's dying ranks break another's collective before
its dump.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..layout import RestartLayout
from ..node_agent import CODE_PATH_VAR, NodeAgent
from ..state.stack_text import Frame, hang_summary, parse_sections, parse_stacks, program_files
from .agent_log import Say, to_slurm_output
from .node_env import rank_pids
from .proctree import Child, kill_program
from .stacks import RECORD_LIMIT_S, StacksReport, rank_numbers, record_hung_stacks, ways_words
from .start_state import StartState

# before the ranks' first line the watchdog waits at least this long (imports, data, rendezvous)
STARTUP_SILENCE_S = 300.0
# how often the watchdog looks at the silence and for another node's `hung-<tag>`
WATCH_EVERY_S = 0.5
# how long after a hung node's `hung-<tag>` the agents signal their ranks: time for the others to see it
PEER_NOTICE_S = 1.0
# a node looks for another's `hung-<tag>` once its own ranks have been silent this long (a hung peer soon blocks
# them in a collective), so that a healthy job's agents never list the restart's folder for it
PEER_QUIET_S = 5.0
# the longest the agent's main thread waits for the watchdog to say why it ended the ranks
ENDING_WAIT_S = RECORD_LIMIT_S + 10.0


def silence_limit(hang_timeout_s: float, ranks_spoke: bool) -> float:
    """How long a silence may last before the node is hung."""
    return hang_timeout_s if ranks_spoke else max(hang_timeout_s, STARTUP_SILENCE_S)


def watch_silence(agent: NodeAgent, child: Child, state: StartState, logs: RestartLayout, say: Say) -> None:
    """Twice a second while the program runs: end it when it has been silent past the limit, or when another node
    was judged hung (not while stopping)."""
    while child.poll() is None and not state.ending:
        time.sleep(WATCH_EVERY_S)
        if state.stopping():
            continue
        quiet = time.time() - state.last_output
        limit = silence_limit(agent.hang_timeout_s, state.ranks_spoke)
        peer = hung_peer(logs, state.tag) if quiet >= min(PEER_QUIET_S, limit) else None
        if peer is not None:
            if state.claim_ending(f"{peer} is hung"):
                end_for_hung_peer(agent, child, state, logs, say, peer)
            return
        if quiet < limit:
            continue
        if state.claim_ending("hung"):
            end_hung(agent, child, state, logs, say, quiet)
        return


def hung_peer(logs: RestartLayout, tag: str) -> Optional[str]:
    """Another task that judged its node hung, if any."""
    return next((t for t in logs.hung_tags() if t != tag), None)


def end_hung(agent: NodeAgent, child: Child, state: StartState, logs: RestartLayout, say: Say, quiet: float) -> None:
    """This node is hung: tell the other nodes, record the stacks, say where the ranks were, end them."""
    report: Optional[StacksReport] = None
    line = f"hung: {silence_words(state.node_name, quiet, agent.hang_timeout_s)}; ending the job"
    try:
        if agent.hang_stacks != "off":
            report = record_all_stacks(agent, child, state, logs, say, quiet)
            line = hung_line(state.node_name, quiet, agent.hang_timeout_s, logs, report)
        else:
            logs.hung(state.tag).write_text(f"{time.time():.3f} {time.time():.3f}\n")
    except Exception as e:  # the stacks are extra: the job ends as hung whatever happened to them
        say(f"the stacks could not be recorded: {e!r}")
        line = hung_line(state.node_name, quiet, agent.hang_timeout_s, logs, None)
    finally:
        say(line)
        to_slurm_output(line)
        kill_program(child)
        state.ended.set()


def record_all_stacks(
    agent: NodeAgent, child: Child, state: StartState, logs: RestartLayout, say: Say, quiet: float
) -> StacksReport:
    """Tell the other nodes (`hung-<tag>`), record this node's stacks, wait for theirs."""
    started = time.time()
    pids = node_ranks(agent, child, state.tag)
    peers = other_tasks(logs, state.tag)
    signal_at = started + (PEER_NOTICE_S if peers else 0.0)
    logs.hung(state.tag).write_text(f"{signal_at:.3f} {started + RECORD_LIMIT_S:.3f}\n")
    say(
        f"no output from the training processes on {state.node_name} for {quiet:.0f}s: recording the stacks "
        f"of its {len(pids)} training processes before ending the job"
    )
    report = record_hung_stacks(
        pids, logs, say, state.tag, tracer=tracer_for(agent), signal_at=signal_at, host=state.node_name
    )
    wait_for_stacks(logs, peers, started + RECORD_LIMIT_S)
    return report


def end_for_hung_peer(
    agent: NodeAgent, child: Child, state: StartState, logs: RestartLayout, say: Say, peer: str
) -> None:
    """Another node was judged hung: record this node's stacks for its report, then end the ranks as after a failed
    peer (the hung node says how the job ended). Ranks a tracer left running are ended only once every task has its
    stacks (or `until`): ending them sooner breaks the collective that the ranks of a node that has not yet seen the
    hang wait in, and those ranks then fail before their stacks are read."""
    state.peer_failed = True  # first: the launcher's report of its ranks' end is not a failure of this task
    try:
        signal_at, until = hung_times(logs.hung(peer))
        pids = node_ranks(agent, child, state.tag)
        say(f"{peer} is hung: recording the stacks of this task's {len(pids)} training processes before ending them")
        if agent.hang_stacks != "off":
            limit_s = max(2.0, until - time.time())
            record_hung_stacks(
                pids,
                logs,
                say,
                state.tag,
                tracer_for(agent),
                signal_at=signal_at,
                limit_s=limit_s,
                host=state.node_name,
            )
            wait_for_stacks(logs, other_tasks(logs, state.tag), until)
    except Exception as e:  # the stacks are extra: the ranks end whatever happened to them
        say(f"the stacks could not be recorded: {e!r}")
    finally:
        kill_program(child)
        state.ended.set()


def tracer_for(agent: NodeAgent) -> Optional[Callable[[], Optional[str]]]:
    """How the tracer is found: never under launch.hang_stacks=faulthandler, else the default (py-spy on PATH)."""
    return (lambda: None) if agent.hang_stacks == "faulthandler" else None


def node_ranks(agent: NodeAgent, child: Child, tag: str) -> Dict[int, int]:
    """rank -> pid of this task's training processes."""
    number = tag[4:]
    first = int(number) if number.isdigit() else 0
    if tag.startswith("node"):
        first *= agent.local_ranks
    return rank_numbers(rank_pids(agent, child), first)


def hung_times(marker: Path) -> Tuple[float, float]:
    """(when to signal the ranks, when the hung node stops waiting for stacks) from its `hung-<tag>`."""
    now = time.time()
    try:
        at, until = (float(x) for x in marker.read_text().split()[:2])
    except (OSError, ValueError):
        return now, now + RECORD_LIMIT_S - PEER_NOTICE_S
    return at, until - 0.5


def other_tasks(logs: RestartLayout, tag: str) -> List[str]:
    """The tags of this start's other agents."""
    return [t for t in logs.agent_logs() if t != tag]


def wait_for_stacks(logs: RestartLayout, peers: List[str], until: float) -> None:
    """Until every other task has a stacks file, or has ended, or `until`."""
    while time.time() < until:
        if all(logs.stacks(t).exists() or logs.failed(t).exists() or logs.finished(t).exists() for t in peers):
            return
        time.sleep(0.2)


def read_stacks(paths: List[Path]) -> Tuple[Dict[int, List[Frame]], Dict[int, str]]:
    """rank -> main-thread frames, and rank -> how they were read, from every stacks file."""
    stacks: Dict[int, List[Frame]] = {}
    ways: Dict[int, str] = {}
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        stacks.update(parse_stacks(text))
        ways.update({s.rank: s.way for s in parse_sections(text)})
    return stacks, ways


def program_roots() -> List[str]:
    """Where the program's own files are: the workdir and the run's frozen code."""
    frozen = os.environ.get(CODE_PATH_VAR, "").split(os.pathsep)
    return [os.environ.get("DANLU_WORKDIR") or os.getcwd(), *frozen]


def silence_words(node: str, quiet: float, hang_timeout_s: float) -> str:
    limit = f"launch.hang_timeout_s={hang_timeout_s:.0f}"
    return f"no output from the training processes on {node} for {quiet:.0f}s ({limit})"


def hung_line(node: str, quiet: float, hang_timeout_s: float, logs: RestartLayout, own: Optional[StacksReport]) -> str:
    """The line that ends a hung job (state/reasons.py reads the run's reason from it): where the ranks were, from
    every node's stacks, then the silence."""
    silence = silence_words(node, quiet, hang_timeout_s)
    files = logs.stacks_files() if own is not None else []
    stacks, ways = read_stacks(files)
    summary = hang_summary(stacks, program_files(program_roots()))
    if not any(f.python for frames in stacks.values() for f in frames):
        why = (
            "the recording failed"
            if own is None
            else "no training process was running"
            if not own.ways
            else f"via {ways_words(ways or own.ways)}"
        )
        return f"hung: {silence}; no stack read ({why}); ending the job"
    names = ", ".join(p.name for p in files)
    return f"hung: {summary}; {silence}; stacks in {names} ({ways_words(ways)}); ending the job"
