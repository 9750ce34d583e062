"""`danlu submit`: compose and check the runs, plan their jobs, then print the plan (--dry-run) or submit it."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

from ..errors import UserError
from ..layout import safe_name
from ..timings import phase
from .common import check_template_dir, in_jobs
from .output import err


def run(args: Namespace) -> int:
    with phase("imports"):
        from ..plan.planner import PlannedJob, new_runs, place, plan_jobs, sweep_layout
        from ..spec.compose import Composer
        from ..spec.validate import check
        from ..submit import notify_job
        from ..submit.execute import new_token
        from ..views.plan import print_plan

    if args.name is not None and not safe_name(args.name):
        raise UserError(f"bad sweep name {args.name!r}", "use letters, digits, '.', '_' and '-' (at most 64)")
    check_template_dir(args.template_dir)
    with phase("composition"):
        composer = Composer(args.config_dir)
        # --reuse-output: a LightningCLI run writes where its config says, as every run of that config does
        cfgs = composer.runs(args.overrides + (["own_folders=false"] if args.reuse_output else []), args.multirun)
    with phase("checks"):
        verdict = check([c.spec for c in cfgs])
        from ..store import default_path
        from ..submit.outputs import folder_problems, output_problems

        if not args.reuse_output:
            verdict.problems.extend(output_problems([c.spec for c in cfgs], default_path()))
        shared = folder_problems([c.spec for c in cfgs], default_path())  # a LightningCLI config's own folders
        for p in shared if args.reuse_output else ():
            err(f"warning: {p.message} (--reuse-output: they share it)")
        if not args.reuse_output:
            verdict.problems.extend(shared)
        from ..submit.ownership import sweep_folder_problems  # folders another user could write

        verdict.problems.extend(sweep_folder_problems([c.spec for c in cfgs], args.name or cfgs[0].spec.name))
        shapes = verdict.shapes
    with phase("cluster facts"):
        from ..submit.live_checks import against_the_live_cluster

        warnings, facts = against_the_live_cluster(
            cfgs, shapes, verdict.problems, getattr(args, "refresh_cluster", False), keep=not args.dry_run
        )
    for line in warnings:
        err(f"warning: {line}")
    if not args.dry_run:
        verdict.refuse()
    spec0 = cfgs[0].spec
    base = args.name or spec0.name or spec0.experiment
    if not safe_name(base):
        raise UserError(f"bad sweep name {base!r}", "set --name with letters, digits, '.', '_' and '-'")
    explicit = bool(args.name or spec0.name)
    local = all(c.spec.cluster.kind == "local" for c in cfgs)
    token = new_token()
    slurm_runs = [(c.spec, s) for c, s in zip(cfgs, shapes, strict=True) if c.spec.cluster.kind == "slurm"]
    with phase("cluster facts"):
        from ..cluster_facts import stop_graces

        graces = stop_graces((place(spec, shp) for spec, shp in slurm_runs), facts) if slurm_runs else {}

    def plan_for(name: str) -> list[PlannedJob]:
        with phase("planning and rendering"):
            return plan_jobs(token, new_runs(name, cfgs, shapes, graces), args.template_dir)

    if args.dry_run:
        # the same verdict as a submit: its errors exit 2, after the scripts where they can still be made
        try:
            jobs = plan_for(base if explicit else f"{base}-xxxx")
        except UserError:
            verdict.refuse()
            raise
        print_plan(jobs)
        if notify_job.wanted(spec0):
            print("# ==== the summary job, submitted after the jobs above (notify.*) ====")
            layout = sweep_layout(spec0, base if explicit else f"{base}-xxxx")
            print(notify_job.preview(spec0, layout.root.name, layout, shapes[0].partition), end="")
        for note in verdict.notes:
            err(note)
        verdict.refuse()
        err(f"dry run: {in_jobs(len(cfgs), len(jobs), local)}; nothing submitted")
        return 0

    from ..submit.sweep import submit_sweep
    from .common import open_store, report_submitted, wait_until_ended

    store = open_store()
    # a rerun composes and renders from these same files, wherever it is run from
    sources = {
        "config_dirs": [str(d) for d in composer.dirs],
        "template_dir": str(Path(args.template_dir).expanduser().resolve()) if args.template_dir else None,
    }
    name, results, njobs = submit_sweep(
        store,
        token,
        base,
        explicit,
        plan_for,
        spec0.experiment,
        spec0.cluster.name,
        args.overrides,
        sys.argv,
        lambda n: str(sweep_layout(spec0, n).root),
        sources,
    )
    report_submitted(args, name, results, njobs, local)
    if results:
        notify_job.submit_after(spec0, name, sweep_layout(spec0, name), shapes[0].partition, results.values(), err)
    return wait_until_ended(store, [name]) if args.wait else 0
