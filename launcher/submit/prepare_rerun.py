"""A rerun as library calls: `rerun_states` reads which states a rerun takes, `choose_runs` picks the runs whose
latest attempt ended so (final ones only), `prepare_rerun` plans their next attempts and checks them against the
live cluster (writing nothing), `PreparedRerun.send` records and submits them. `danlu rerun` (cli/rerun.py)
parses, calls these and prints; `--dry-run` prints the plan and sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import NothingToDo, UserError
from ..state.names import ACTIVE, RERUNNABLE

CHOICES = RERUNNABLE + ("CANCELLED", "UNSUBMITTED")  # what --state takes


@dataclass(frozen=True)
class RerunRequest:
    """What a rerun was asked for (the options of `danlu rerun`)."""

    target: str  # a sweep or a run
    overrides: Sequence[str] = ()
    states: Optional[str] = None  # --state, comma-separated
    cont: bool = False  # --continue: train COMPLETED runs further
    config_dir: Optional[str] = None
    template_dir: Optional[str] = None
    exclude_failed_nodes: bool = False
    refresh_cluster: bool = False
    dry_run: bool = False
    current_code: bool = False  # --code current: freeze the workdir as it is now, not the run's own snapshot


def rerun_states(request: RerunRequest) -> Tuple[str, ...]:
    """The states whose runs are rerun; a request that cannot be met is refused before the store is read."""
    if request.cont and request.states:
        raise UserError(
            "--continue takes COMPLETED runs; --state does not go with it",
            "drop --state (or rerun failed runs without --continue)",
        )
    if request.cont and not request.overrides:
        raise UserError(
            "--continue without overrides would end at once: the run already completed",
            "say what to train further, e.g. danlu rerun RUN --continue args.max_train_steps=4000",
        )
    if request.cont:
        return ("COMPLETED",)
    if not request.states:
        return RERUNNABLE
    states = tuple(s.strip().upper() for s in request.states.split(","))
    for s in states:
        if s == "COMPLETED" or s in ACTIVE:
            raise UserError(
                f"--state {s}: danlu never reruns runs that completed or are still queued/running",
                f"choose among {', '.join(CHOICES)}",
            )
        if s not in CHOICES:
            raise UserError(f"unknown state {s!r} for --state", f"choose among {', '.join(CHOICES)}")
    return states


@dataclass
class ChosenRuns:
    """The latest attempts to rerun, and those left alone because Slurm still holds their job."""

    chosen: List[Any]
    held: List[Any] = field(default_factory=list)


def choose_runs(request: RerunRequest, states: Tuple[str, ...], rows: List[Any]) -> ChosenRuns:
    """A run is rerun only once its state is final (state/machine.py): a PREEMPTED job that Slurm still holds will
    start again by itself, and a rerun would put a second copy of it into the same run directory."""
    held = [r for r in rows if r["state"] in states and not r["final"]]
    chosen = [r for r in rows if r["state"] in states and r["final"]]
    if held and not chosen:
        first = held[0]
        raise UserError(
            f"{first['run']} is {first['state']} but Slurm still holds job {first['job_id']} and may "
            f"start it again" + (f" ({len(held) - 1} more like it)" if len(held) > 1 else ""),
            "wait until `danlu status` shows it final (or requeued and running), or `danlu cancel` it first",
        )
    if not chosen:
        raise _nothing_to_do(request, states, rows)
    return ChosenRuns(chosen, held)


def _nothing_to_do(request: RerunRequest, states: Tuple[str, ...], rows: List[Any]) -> NothingToDo:
    counts: Dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    if request.cont:
        return NothingToDo(
            f"nothing to continue in {request.target}: {summary}",
            "--continue trains COMPLETED runs further; failed ones: danlu rerun without it",
        )
    return NothingToDo(
        f"nothing to rerun in {request.target}: {summary}",
        "only runs whose latest attempt ended " + "/".join(states) + " are rerun (see --state)",
    )


@dataclass
class PreparedRerun:
    """The planned next attempts of the chosen runs and what the live cluster said of them: `warnings` are said
    whatever the verdict, `refuse()` raises its first problem."""

    request: RerunRequest
    label: str  # the sweep of every chosen run, or "rerun" when they come from several
    planned: List[Any]  # plan.planner.PlannedRun
    expect: Dict[str, int]  # run -> the attempt it is at now
    template_dir: Optional[str]
    warnings: List[str]
    problem: Optional[UserError] = None
    notes: List[str] = field(default_factory=list)  # which code the attempts train (submit/freeze.rerun_codes)
    frozen: Any = None  # submit.freeze.Frozen: the snapshots to write before the attempts are recorded

    def refuse(self) -> None:
        if self.problem is not None:
            raise self.problem

    def plan(self) -> "RerunPlan":
        """The jobs of the attempts, under a new token."""
        from ..plan.planner import plan_jobs
        from .execute import new_token

        token = new_token()
        return RerunPlan(self, token, plan_jobs(token, self.planned, self.template_dir))


@dataclass
class RerunPlan:
    prepared: PreparedRerun
    token: str
    jobs: List[Any]  # plan.planner.PlannedJob

    @property
    def local(self) -> bool:
        return all(j.local for j in self.jobs)

    def send(self, store: Any) -> Dict[str, str]:
        """Record the attempts and submit their jobs: run id -> job id."""
        from .sweep import submit_rerun

        p = self.prepared
        p.frozen.write()
        return submit_rerun(store, self.token, p.label, self.jobs, p.request.overrides, p.expect)


def prepare_rerun(request: RerunRequest, store: Any, chosen: List[Any]) -> PreparedRerun:
    """Plan the next attempt of each chosen run with the original submit's configs and templates (unless the request
    names its own), and check them against the live cluster."""
    from ..spec.compose import Composer
    from .live_checks import against_the_live_cluster
    from .prepare import check_template_dir
    from .rerun import plan_attempts, with_stop_graces

    check_template_dir(request.template_dir)
    sweep = store.sweep(chosen[0]["sweep"])
    composer, template_dir = Composer.of_sweep(sweep, request.config_dir, request.template_dir)
    planned, expect = plan_attempts(store, chosen, composer, request.overrides, request.exclude_failed_nodes)
    planned, code_notes, frozen = _with_code(planned, chosen, request)
    # the live cluster's word on these runs: the profile's contradictions, the submit limit
    problems: List[UserError] = []
    warnings, facts = against_the_live_cluster(
        [p.cfg for p in planned],
        [p.shape for p in planned],
        problems,
        request.refresh_cluster,
        keep=not request.dry_run,
    )
    planned = with_stop_graces(planned, facts)
    label = chosen[0]["sweep"] if len({r["sweep"] for r in chosen}) == 1 else "rerun"
    return PreparedRerun(
        request,
        label,
        planned,
        expect,
        template_dir,
        list(warnings),
        problems[0] if problems else None,
        code_notes,
        frozen,
    )


def _with_code(planned: List[Any], chosen: List[Any], request: RerunRequest) -> Tuple[List[Any], List[str], Any]:
    """The planned attempts with the code they train (submit/freeze.rerun_codes), what to say of it, and the
    snapshots to write."""
    from dataclasses import replace

    from .freeze import rerun_codes

    codes, notes, frozen = rerun_codes([p.spec for p in planned], chosen, request.current_code)
    return [replace(p, code=c) for p, c in zip(planned, codes, strict=True)], notes, frozen
