"""Where a run's files live: the one place that spells the paths of a sweep, run, attempt and restart.

    <runs_dir>/<sweep>/                      SweepLayout
        scripts/<token>-<n>.sbatch           the script of job n of a submission (as given to sbatch)
        scripts/run-<index>.attempt-<N>.lightning.yaml
                                             a LightningCLI run's extra --config (its own folders, danlu's callback)
        .submitit/<token>-<n>.<i>.pkl        the node agent of array task i, pickled before sbatch
        .submitit/<job id>/                  submitit's own folder of a job (its runner's files)
        .slurm/job-<job id>.out              Slurm's own output of the batch script (appended on requeue)
        <index>/                             RunLayout
            output/                          the program's output dir (when it has an output option), and a
                                             LightningCLI run's checkpoint and log folders
            stop.ckpt, stop.ckpt.json        a LightningCLI run's trainer, saved at a stop signal (and its step)
            logs/attempt-<N>/                AttemptLayout: one `danlu submit`/`danlu rerun` of the run
                result.json                  written by task 0's agent when the program ends (the last restart's)
                restart-<K>/                 RestartLayout: one start of the attempt (Slurm requeues count up K)
                    node<n>.log              one launcher per node (accelerate, torchrun): all its ranks' lines
                    rank<r>.log, rank<r>.err one task per rank (lightning, python); per-rank copies for launchers
                    agent-<tag>.log          the node agent's own lines (head, port, command, signals)
                    <log>.times              beside each node/rank log: when its lines were written
                    resumed-from.json        the checkpoint this start resumed from (LightningCLI runs)
                    environment.json         the job environment it ran in (Python, packages, lock, driver)
                    stacks-<tag>.txt         the Python stacks of a task's ranks, recorded before a hang ended them
                    hung-<tag>               written by an agent that judged its node hung (the others record too)

    <runs_dir>/.danlu-code/                  frozen code, shared by every run under runs_dir: its paths are in
                                             launcher/code/store_layout.py
    <runs_dir>/.danlu-debug/<session>/0/     a `danlu debug` session (no store row): laid out as a run's folder

Each restart has log files of its own, so a requeued job never writes over (or into) an earlier start's logs.
The job side (launcher/job) and the login side both use this module; it imports nothing but the standard library.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

RESULT = "result.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def safe_name(name: Optional[str]) -> bool:
    """Can `name` be a sweep's (or an environment's) folder name: letters, digits, '.', '_', '-', at most 64?"""
    return bool(name) and _SAFE_NAME.match(name or "") is not None


_RESTART = re.compile(r"^restart-(\d+)\Z")
LOGS = "logs"
DEBUG_DIR = ".danlu-debug"  # under runs_dir: `danlu debug` sessions


def attempt_name(attempt: int) -> str:
    return f"attempt-{attempt}"


def restart_name(restart: int) -> str:
    return f"restart-{restart}"


RANK0_LOGS = ("rank0.log", "node0.log")  # where rank 0's lines are: its own log, else its node's launcher log


def latest_restart_dirs(run_dir: str, attempt: int, count: int = 2) -> List[str]:
    """The folders of an attempt's last `count` restarts, the latest first, as plain strings: one directory listing
    and no Path objects (`danlu status` asks this of every running run on each refresh)."""
    root = os.path.join(run_dir, LOGS, attempt_name(attempt))
    try:
        with os.scandir(root) as entries:
            found = sorted((int(m.group(1)) for e in entries if (m := _RESTART.match(e.name))), reverse=True)
    except OSError:
        return []
    return [os.path.join(root, restart_name(k)) for k in found[:count]]


_NUMBERS = re.compile(r"(\d+)")


def _json_object(path: Path) -> Optional[Dict[str, Any]]:
    """A JSON object a file holds; None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def log_per_task(launch_kind: str, tasks_per_node: int) -> bool:
    """One agent (and one log) per srun task rather than per node: when a node runs several tasks, or the
    program itself is each rank (lightning, python)."""
    return tasks_per_node > 1 or launch_kind in ("lightning", "python")


def launcher_rank_logs(launch_kind: str, world: int) -> bool:
    """Does torch elastic write per-rank files (`--log_dir`) that the agent copies into rank<r>.log/.err? Then a
    node log's `[default<L>]:` copies of those lines (`--tee`) are not shown again."""
    return launch_kind == "torchrun" or (launch_kind == "accelerate" and world > 1)


def time_index(log: Path) -> Path:
    """Written beside each node/rank log as the agent writes it: `<byte offset> <unix time>` lines (one per new
    hundredth of a second), so that a merged view can interleave the lines of several logs by time."""
    return log.with_name(log.name + ".times")


def natural_key(path: Path) -> tuple[int | str, ...]:
    """node2.log before node10.log."""
    return tuple(int(x) if x.isdigit() else x for x in _NUMBERS.split(path.name))


@dataclass(frozen=True)
class SweepLayout:
    root: Path

    @property
    def scripts_dir(self) -> Path:
        return self.root / "scripts"

    @property
    def submitit_dir(self) -> Path:
        return self.root / ".submitit"

    @property
    def slurm_dir(self) -> Path:
        return self.root / ".slurm"

    def dirs(self) -> List[Path]:
        """The folders a submission creates before sbatch."""
        return [self.root, self.slurm_dir, self.submitit_dir, self.scripts_dir]

    def script(self, tag: str) -> Path:
        """The batch script of the job tagged `<token>:<n>`."""
        return self.scripts_dir / (tag.replace(":", "-") + ".sbatch")

    def pickle_stem(self, tag: str) -> Path:
        """`<stem>.<array task>.pkl` are the job's pickled node agents, written before sbatch; `<stem>.pkl` the one
        agent every task of the job shares when they are all alike (job_pickle)."""
        return self.submitit_dir / tag.replace(":", "-")

    def pickle(self, tag: str, task: int) -> Path:
        return Path(f"{self.pickle_stem(tag)}.{task}.pkl")

    def job_pickle(self, tag: str) -> Path:
        return Path(f"{self.pickle_stem(tag)}.pkl")

    def submitit_folder(self) -> Path:
        """submitit's folder pattern (%j: the job id, array tasks as <array id>_<task>)."""
        return self.submitit_dir / "%j"

    def slurm_output_pattern(self, array: bool) -> Path:
        """sbatch --output: Slurm fills in the ids; `slurm_output` names the resulting file."""
        return self.slurm_dir / ("job-%A_%a.out" if array else "job-%j.out")

    def slurm_output(self, job_id: str) -> Path:
        return self.slurm_dir / f"job-{job_id}.out"

    @property
    def notify_script(self) -> Path:
        """The batch script of the sweep's summary job (notify.*): it runs `danlu notify` once the runs ended."""
        return self.scripts_dir / "notify.sbatch"

    def notify_output_pattern(self) -> Path:
        return self.slurm_dir / "notify-%j.out"

    def run(self, index: int) -> "RunLayout":
        return RunLayout(self.root / str(index))

    @classmethod
    def debug_session(cls, runs_dir: Path, session: str) -> "SweepLayout":
        """The folder of a `danlu debug` session, which the store never records: its run 0 is laid out as a run's."""
        return cls(runs_dir / DEBUG_DIR / session)

    def lightning_config(self, index: int, attempt: int) -> Path:
        """The extra `--config` of a LightningCLI run's attempt, written at submit after the program's own."""
        return self.scripts_dir / f"run-{index}.{attempt_name(attempt)}.lightning.yaml"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def sweep(self) -> SweepLayout:
        return SweepLayout(self.root.parent)

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def logs_dir(self) -> Path:
        return self.root / LOGS

    @property
    def stop_checkpoint(self) -> Path:
        """A LightningCLI run's whole trainer, saved by danlu's callback at a stop signal; `<it>.json` its step."""
        return self.root / "stop.ckpt"

    def lightning_config(self, attempt: int) -> Path:
        return self.sweep.lightning_config(int(self.root.name), attempt)

    def dirs(self) -> List[Path]:
        """The folders the run's node agents make when it starts (a submit makes only its sweep's)."""
        return [self.root, self.output_dir]

    def attempt(self, attempt: int) -> "AttemptLayout":
        return AttemptLayout(self.logs_dir / attempt_name(attempt))

    def slurm_output(self, job_id: Optional[str]) -> Optional[Path]:
        """Slurm's own output of this run's batch script, for a job in Slurm (the login side asks the run's
        backend: launcher/backends)."""
        return self.sweep.slurm_output(str(job_id)) if job_id else None


@dataclass(frozen=True)
class AttemptLayout:
    root: Path

    @property
    def result(self) -> Path:
        return self.root / RESULT

    @property
    def step_started(self) -> Path:
        """Touched by every task of a start as it begins: the batch script tells a step Slurm could not create
        (no task ran: it tries again) from one that ran and failed."""
        return self.root / "step-started"

    @property
    def notified(self) -> Path:
        """Written once this attempt's failure was announced (notify.url): the summary job does not repeat it."""
        return self.root / "notified"

    def mark_notified(self, reason: str) -> None:
        self.notified.write_text(json.dumps({"sent": time.time(), "reason": reason}))

    def read_result(self) -> Optional[Dict[str, Any]]:
        """What task 0's agent wrote when the program ended (None if nothing yet): JSON, values of any JSON type."""
        return _json_object(self.result)

    def write_result(self, data: Dict[str, object]) -> None:
        tmp = self.result.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.result)

    def restart(self, restart: int) -> "RestartLayout":
        return RestartLayout(self.root / restart_name(restart), restart)

    def restarts(self) -> List["RestartLayout"]:
        """The restarts that have written logs, in order (one directory listing: status reads this for every
        running run)."""
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return []
        found = sorted(int(m.group(1)) for e in entries if (m := _RESTART.match(e.name)) and e.is_dir())
        return [self.restart(k) for k in found]

    def latest(self) -> Optional["RestartLayout"]:
        every = self.restarts()
        return every[-1] if every else None

    def read_environment(self) -> Optional[Dict[str, Any]]:
        """The environment the latest start that recorded one ran in (None before any did)."""
        for restart in reversed(self.restarts()):
            found = _json_object(restart.environment)
            if found is not None:
                return found
        return None

    def log_files(self) -> List[Path]:
        """Every log of every restart (for the reason of a failure: the tail of these)."""
        return [f for r in self.restarts() for f in r.logs()]


@dataclass(frozen=True)
class RestartLayout:
    root: Path
    number: int

    @staticmethod
    def tag(per_task: bool, rank: int, node: int) -> str:
        return f"rank{rank}" if per_task else f"node{node}"

    def log(self, tag: str) -> Path:
        """The output of one node's launcher (node<n>) or one task's program (rank<r>)."""
        return self.root / f"{tag}.log"

    def node_log(self, node: int) -> Path:
        return self.log(f"node{node}")

    def rank_log(self, rank: int, stderr: bool = False) -> Path:
        return self.root / f"rank{rank}.{'err' if stderr else 'log'}"

    def agent_log(self, tag: str) -> Path:
        return self.root / f"agent-{tag}.log"

    @property
    def environment(self) -> Path:
        """The job environment this start ran in (Python, packages, lock file, GPU driver), written by task 0."""
        return self.root / "environment.json"

    @property
    def resumed_from(self) -> Path:
        """Which checkpoint this start resumed from, written by task 0's agent (LightningCLI runs)."""
        return self.root / "resumed-from.json"

    def read_resumed_from(self) -> Optional[Dict[str, Any]]:
        """None before the start wrote it, and for a start that found no checkpoint (JSON null)."""
        return _json_object(self.resumed_from)

    def stopped(self, tag: str) -> Path:
        """Written by an agent once its ranks have stopped for a signal (the time-limit warning, SIGTERM; checkpoint
        written): task 0 waits for every task's outcome before it asks Slurm to requeue the job."""
        return self.root / f"stopped-{tag}"

    def finished(self, tag: str) -> Path:
        """Written by an agent whose program ended by itself, exit 0: the program is finishing on every node."""
        return self.root / f"finished-{tag}"

    def finished_tags(self) -> List[str]:
        """The tasks (agent tags) whose program ended by itself, in name order."""
        return sorted(p.name[len("finished-") :] for p in self.root.glob("finished-*")) if self.root.is_dir() else []

    def stopped_count(self) -> int:
        return len(list(self.root.glob("stopped-*"))) if self.root.is_dir() else 0

    def failed(self, tag: str) -> Path:
        """Written by an agent whose program failed first (not stopped by a signal): the job ends FAILED, a stop
        that follows it on the other nodes is its consequence and never leads to a requeue."""
        return self.root / f"failed-{tag}"

    def failed_tags(self) -> List[str]:
        """The tasks (agent tags) that recorded a failure, in name order."""
        return sorted(p.name[len("failed-") :] for p in self.root.glob("failed-*")) if self.root.is_dir() else []

    def failed_count(self) -> int:
        return len(self.failed_tags())

    def ended_count(self) -> int:
        """Tasks whose program has ended: stopped by a signal, ended by itself with exit 0, or failed."""
        if not self.root.is_dir():
            return 0
        return sum(1 for p in self.root.iterdir() if p.name.startswith(("stopped-", "finished-", "failed-")))

    def stacks(self, tag: str) -> Path:
        """The Python stacks of one task's ranks, recorded by its agent before it ended them for a hang."""
        return self.root / f"stacks-{tag}.txt"

    def stacks_files(self) -> List[Path]:
        """Every task's stacks file of this restart, in natural order."""
        return sorted(self.root.glob("stacks-*.txt"), key=natural_key) if self.root.is_dir() else []

    def hung(self, tag: str) -> Path:
        """Written by an agent that judged its node hung, before it records its ranks' stacks: the other agents
        record theirs too, and signal them at the time it holds (unix seconds)."""
        return self.root / f"hung-{tag}"

    def hung_tags(self) -> List[str]:
        """The tasks (agent tags) that judged their node hung, in name order."""
        return sorted(p.name[len("hung-") :] for p in self.root.glob("hung-*")) if self.root.is_dir() else []

    @property
    def stacks_request(self) -> Path:
        """`danlu stacks` writes a request's id here; each agent answers into `stacks_answer` and lets its ranks run."""
        return self.root / "stacks-request"

    def stacks_answer(self, request: str, tag: str) -> Path:
        return self.root / f"stacks-asked-{request}" / f"{tag}.txt"

    def launcher_logs(self, tag: str) -> Path:
        """Where torch elastic writes its per-rank files while the node runs (collected into rank logs)."""
        return self.root / f"{tag}-ranks"

    def logs(self) -> List[Path]:
        """node*/rank* logs (not the agents'), in natural order."""
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.glob("*.log") if not p.name.startswith("agent-")), key=natural_key)

    def node_logs(self) -> List[Path]:
        return [p for p in self.logs() if p.name.startswith("node")]

    def rank_logs(self) -> List[Path]:
        return [p for p in self.logs() if p.name.startswith("rank")]

    def agent_logs(self) -> Dict[str, Path]:
        """tag -> the agent's log, for every agent of this restart."""
        if not self.root.is_dir():
            return {}
        return {p.stem[len("agent-") :]: p for p in sorted(self.root.glob("agent-*.log"), key=natural_key)}
