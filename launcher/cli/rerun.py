"""`danlu rerun SWEEP|RUN`: new attempts of the runs that ended badly, planned like a submit, in their own run dirs."""

from __future__ import annotations

from argparse import Namespace

from .output import err


def run(args: Namespace) -> int:
    from ..state.reconcile import refresh
    from ..submit import notify_job
    from ..submit.prepare_rerun import RerunRequest, choose_runs, prepare_rerun, rerun_states
    from ..views.plan import print_plan
    from .common import in_jobs, open_store, report_submitted, wait_until_ended

    request = RerunRequest(
        target=args.target,
        overrides=args.overrides,
        states=args.state,
        cont=getattr(args, "cont", False),
        config_dir=args.config_dir,
        template_dir=args.template_dir,
        exclude_failed_nodes=args.exclude_failed_nodes,
        refresh_cluster=args.refresh_cluster,
        dry_run=args.dry_run,
        current_code=args.code == "current",
    )
    states = rerun_states(request)
    store = open_store()
    sweeps, runs = store.resolve([args.target])
    found = choose_runs(request, states, refresh(store, store.latest(sweeps=sweeps, runs=runs)).rows)
    for r in found.held:
        err(f"not rerun: {r['run']} is {r['state']} but Slurm still holds job {r['job_id']} and may start it again")
    prepared = prepare_rerun(request, store, found.chosen)
    for line in prepared.warnings:
        err(f"warning: {line}")
    for line in prepared.notes:
        err(f"note: {line}")
    prepared.refuse()
    plan = prepared.plan()
    if args.dry_run:
        print_plan(plan.jobs)
        err(f"dry run: would rerun {in_jobs(len(prepared.planned), len(plan.jobs), plan.local)}; nothing submitted")
        return 0
    results = plan.send(store)
    report_submitted(args, prepared.label, results, len(plan.jobs), plan.local)
    if prepared.label != "rerun":  # the sweep's summary (notify.*) once more, after these
        first = plan.jobs[0]
        notify_job.submit_after(
            first.spec, prepared.label, first.sweep_layout, first.runs[0].shape.partition, results.values(), err
        )
    return wait_until_ended(store, [], list(results)) if args.wait else 0
