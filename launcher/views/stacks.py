"""`danlu stacks RUN`: ask a running run's agents for their ranks' Python stacks and print them merged, each line
labelled `[host rank<R>]` like `danlu logs`. The agents read them with py-spy and the ranks go on
(launcher/job/stacks_request.py). For a run that no longer runs, the stacks its agents recorded before ending it as
hung, if any."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..cli.common import refreshed_run
from ..cli.output import err
from ..errors import UserError
from ..layout import RestartLayout, RunLayout
from ..state.stack_text import hang_summary, parse_sections, parse_stacks, program_files

HEAD = re.compile(r"^# .* on (\S+) at \S+$")
POLL_S = 0.2


@dataclass
class RankStack:
    tag: str  # the agent's: node<N> or rank<R>
    host: str
    rank: int
    pid: int
    way: str  # py-spy, py-spy --native, faulthandler, or none
    note: str  # why there is none
    text: str


def show_stacks(store: Any, run: str, timeout: float, as_json: bool) -> int:
    """Print the ranks' stacks; 1 when no node answered in time."""
    if timeout <= 0:
        raise UserError(f"--timeout {timeout:g}: must be more than 0", "e.g. --timeout 30")
    row = refreshed_run(store, run, "stacks")
    restarts = RunLayout(Path(row["run_dir"])).attempt(row["attempt"]).restarts()
    if row["state"] != "RUNNING":
        files = restarts[-1].stacks_files() if restarts else []
        if not files:
            raise UserError(
                f"{run} is {row['state']}, not RUNNING: only a running run's stacks can be read",
                f"`danlu logs {run}` shows how it ended; a run ended as hung keeps its ranks' stacks",
            )
        err(f"{run} is {row['state']}: the stacks its agents recorded before ending it as hung")
        return _print(read_files({p.stem[len("stacks-") :]: p for p in files}), row, as_json)
    if not restarts or not restarts[-1].agent_logs():
        raise UserError(f"{run} has not started its program yet", f"try again once `danlu logs {run}` shows lines")
    restart = restarts[-1]
    tags = list(restart.agent_logs())
    started = time.time()
    answers = ask(restart, tags, timeout)
    missing = [t for t in tags if t not in answers]
    for tag in missing:
        err(f"warning: {tag} did not answer within {timeout:g}s (its program may have ended, or its agent is busy)")
    if not answers:
        return 1
    stacks = read_files(answers)
    err(f"{len(stacks)} ranks read in {time.time() - started:.1f}s ({_ways(stacks)}); {run} goes on")
    return _print(stacks, row, as_json)


def ask(restart: RestartLayout, tags: Sequence[str], timeout: float) -> Dict[str, Path]:
    """Write a new request and wait for each agent's answer: tag -> its file."""
    request = secrets.token_hex(6)
    restart.stacks_answer(request, "-").parent.mkdir()
    tmp = restart.stacks_request.with_name(f".stacks-request-{request}")
    tmp.write_text(request + "\n")
    os.replace(tmp, restart.stacks_request)  # whole: an agent reads it any moment
    deadline = time.time() + timeout
    answers: Dict[str, Path] = {}
    while time.time() < deadline and len(answers) < len(tags):
        time.sleep(POLL_S)
        answers.update({t: p for t in tags if (p := restart.stacks_answer(request, t)).exists()})
    return answers


def read_files(files: Dict[str, Path]) -> List[RankStack]:
    """Every rank's section of the answers, in rank order."""
    out: List[RankStack] = []
    for tag, path in files.items():
        text = path.read_text(errors="replace")
        head = HEAD.match(text.partition("\n")[0])
        host = head.group(1) if head else tag
        for s in parse_sections(text):
            out.append(RankStack(tag, host, s.rank, s.pid, s.way, s.note, "\n".join(s.body).strip("\n")))
    return sorted(out, key=lambda r: r.rank)


def _ways(stacks: List[RankStack]) -> str:
    ways = sorted({s.way for s in stacks})
    return ", ".join(ways)


def _print(stacks: List[RankStack], row: Any, as_json: bool) -> int:
    if as_json:
        print(json.dumps([asdict(s) for s in stacks], indent=1))
        return 0
    for s in stacks:
        label = f"[{s.host} rank{s.rank}]"
        print(f"{label} pid {s.pid}, read by {s.way}" + (f": {s.note}" if s.note else ""))
        for line in s.text.splitlines():
            print(f"{label} {line}")
    where = _where(stacks, row)
    if where:
        err(f"where: {where}")
    return 0


def _where(stacks: List[RankStack], row: Any) -> Optional[str]:
    """The ranks grouped by where they are (the line a hung run's reason gives)."""
    text = "\n".join(f"rank {s.rank} (pid {s.pid}) via {s.way}\n{s.text}" for s in stacks)
    roots = [row["workdir"] or "", *_frozen_tree(row)]
    return hang_summary(parse_stacks(text), program_files([r for r in roots if r])) or None


def _frozen_tree(row: Any) -> List[str]:
    """The folder of the run's frozen code, where it ran from."""
    key = row["code"] if "code" in row.keys() else None
    if not key:
        return []
    from ..code.store_layout import CodeLayout

    return [str(CodeLayout.of_run_dir(Path(row["run_dir"])).tree(key))]
