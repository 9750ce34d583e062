"""A submit as library calls: `prepare_submit` composes and checks the runs and asks the live cluster (writing
nothing), `PreparedSubmit.plan` names the sweep and plans its jobs, `SubmitPlan.send` records and submits them.
`danlu submit` (cli/submit.py) parses, calls these and prints; `--dry-run` prints the plan and sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..backends import for_spec
from ..errors import UserError
from ..layout import safe_name
from ..timings import phase


@dataclass(frozen=True)
class SubmitRequest:
    """What a submit was asked for (the options of `danlu submit`)."""

    overrides: Sequence[str]
    multirun: bool = False
    name: Optional[str] = None
    config_dir: Optional[str] = None
    template_dir: Optional[str] = None
    reuse_output: bool = False  # LightningCLI runs write where their config says, shared by every run of it
    refresh_cluster: bool = False
    dry_run: bool = False


@dataclass
class PreparedSubmit:
    """The composed and checked runs of one submit, with what was found against them. `verdict.refuse()` raises
    the first problem; `warnings` are said whatever the verdict."""

    request: SubmitRequest
    composer: Any  # spec.compose.Composer
    cfgs: List[Any]  # spec.compose.RunConfig, one per run
    verdict: Any  # spec.validate.Verdict
    facts: Any  # cluster_facts' facts of the live cluster (None where it was not asked)
    warnings: List[str] = field(default_factory=list)

    @property
    def local(self) -> bool:
        return not any(for_spec(c.spec).in_slurm for c in self.cfgs)

    def sweep_base(self) -> Tuple[str, bool]:
        """The sweep's name, or the stem a name is made from, and whether it was named (--name or the config)."""
        spec0 = self.cfgs[0].spec
        base = self.request.name or spec0.name or spec0.experiment
        if not safe_name(base):
            raise UserError(f"bad sweep name {base!r}", "set --name with letters, digits, '.', '_' and '-'")
        return base, bool(self.request.name or spec0.name)

    def plan(self) -> "SubmitPlan":
        """Name the sweep and read the stop graces of its Slurm runs' places: ready to plan jobs for a name."""
        from ..plan.planner import place
        from ..submit.execute import new_token

        base, explicit = self.sweep_base()
        shapes = self.verdict.shapes
        slurm_runs = [(c.spec, s) for c, s in zip(self.cfgs, shapes, strict=True) if for_spec(c.spec).in_slurm]
        with phase("cluster facts"):
            from ..cluster_facts import stop_graces

            graces = stop_graces((place(spec, shp) for spec, shp in slurm_runs), self.facts) if slurm_runs else {}
        with phase("freezing the code"):
            from .freeze import Frozen, freeze_specs

            # runs that will be refused are not frozen: a dry run still shows their plan, without snapshots
            frozen = Frozen() if self.verdict.problems else freeze_specs([c.spec for c in self.cfgs])
        return SubmitPlan(self, new_token(), base, explicit, graces, frozen)


def check_template_dir(template_dir: Optional[str]) -> None:
    """--template-dir (submit, rerun) names a folder that exists."""
    if template_dir and not Path(template_dir).expanduser().is_dir():
        raise UserError(
            f"template dir {template_dir!r} does not exist",
            "pass --template-dir a folder with your copies of templates/*.j2",
        )


def prepare_submit(request: SubmitRequest) -> PreparedSubmit:
    """Compose the runs, check them (files, program, output folders, folder ownership) and against the live
    cluster. Bad input is in the verdict, not raised: a dry run prints what it can first."""
    with phase("imports"):
        from ..spec.compose import Composer
        from ..spec.validate import check

    if request.name is not None and not safe_name(request.name):
        raise UserError(f"bad sweep name {request.name!r}", "use letters, digits, '.', '_' and '-' (at most 64)")
    check_template_dir(request.template_dir)
    with phase("composition"):
        composer = Composer(request.config_dir)
        # reuse_output: a LightningCLI run writes where its config says, as every run of that config does
        own = ["own_folders=false"] if request.reuse_output else []
        cfgs = composer.runs(list(request.overrides) + own, request.multirun)
    with phase("checks"):
        verdict = check([c.spec for c in cfgs])
        warnings = _folder_checks(request, cfgs, verdict)
    with phase("cluster facts"):
        from ..submit.live_checks import against_the_live_cluster

        found, facts = against_the_live_cluster(
            cfgs, verdict.shapes, verdict.problems, request.refresh_cluster, keep=not request.dry_run
        )
    return PreparedSubmit(request, composer, cfgs, verdict, facts, warnings + list(found))


def _folder_checks(request: SubmitRequest, cfgs: List[Any], verdict: Any) -> List[str]:
    """Output folders another run owns, a LightningCLI config's own folders, sweep folders another user could write:
    problems into the verdict; the warnings of --reuse-output returned."""
    from ..store import default_path
    from ..submit.outputs import folder_problems, output_problems
    from ..submit.ownership import sweep_folder_problems

    specs = [c.spec for c in cfgs]
    if not request.reuse_output:
        verdict.problems.extend(output_problems(specs, default_path()))
    shared = folder_problems(specs, default_path())  # a LightningCLI config's own folders
    warnings = [f"{p.message} (--reuse-output: they share it)" for p in shared] if request.reuse_output else []
    if not request.reuse_output:
        verdict.problems.extend(shared)
    verdict.problems.extend(sweep_folder_problems(specs, request.name or cfgs[0].spec.name))
    return warnings


@dataclass
class SubmitPlan:
    """A prepared submit with its token and stop graces: it plans the jobs for a sweep name, and sends them."""

    prepared: PreparedSubmit
    token: str
    base: str
    explicit: bool
    graces: Dict[Any, Optional[int]]
    frozen: Any  # submit.freeze.Frozen: each workdir's snapshot

    def jobs(self, name: str) -> List[Any]:
        """The planned jobs (plan.planner.PlannedJob) of the sweep under `name`."""
        from ..plan.planner import new_runs, plan_jobs

        p = self.prepared
        with phase("planning and rendering"):
            runs = new_runs(name, p.cfgs, p.verdict.shapes, self.graces, self.frozen.codes)
            return plan_jobs(self.token, runs, p.request.template_dir)

    def _jobs_then_code(self, name: str) -> List[Any]:
        """The jobs of the sweep, then its snapshots written: a plan that cannot be made leaves nothing behind."""
        jobs = self.jobs(name)
        with phase("freezing the code"):
            self.frozen.write()
        return jobs

    def preview_name(self) -> str:
        """The name a dry run shows: the sweep's, or its stem with the suffix a submit would draw."""
        return self.base if self.explicit else f"{self.base}-xxxx"

    def layout(self, name: str) -> Any:
        """The sweep's folders (layout.SweepLayout) under `name`."""
        from ..plan.planner import sweep_layout

        return sweep_layout(self.prepared.cfgs[0].spec, name)

    def send(self, store: Any, argv: Sequence[str]) -> Tuple[str, Dict[str, str], int]:
        """Reserve the sweep's name, record its runs and submit their jobs: (sweep, run id -> job id, jobs)."""
        from ..submit.sweep import submit_sweep

        p = self.prepared
        spec0 = p.cfgs[0].spec
        template_dir = p.request.template_dir
        # a rerun composes and renders from these same files, wherever it is run from
        sources = {
            "config_dirs": [str(d) for d in p.composer.dirs],
            "template_dir": str(Path(template_dir).expanduser().resolve()) if template_dir else None,
        }
        sweep_dir: Callable[[str], str] = lambda n: str(self.layout(n).root)  # noqa: E731
        return submit_sweep(
            store,
            self.token,
            self.base,
            self.explicit,
            self._jobs_then_code,
            spec0.experiment,
            spec0.cluster.name,
            p.request.overrides,
            argv,
            sweep_dir,
            sources,
        )
