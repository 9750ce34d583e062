"""`danlu submit`: compose and check the runs, plan their jobs, then print the plan (--dry-run) or submit it."""

from __future__ import annotations

import sys
from argparse import Namespace
from typing import TYPE_CHECKING

from ..errors import UserError
from ..timings import phase
from .common import in_jobs
from .output import err

if TYPE_CHECKING:
    from ..submit.prepare import SubmitPlan, SubmitRequest


def submit_request(args: Namespace) -> "SubmitRequest":
    """What the command line asked to submit (`danlu debug` shares the options it has)."""
    from ..submit.prepare import SubmitRequest

    return SubmitRequest(
        overrides=args.overrides,
        multirun=getattr(args, "multirun", False),
        name=getattr(args, "name", None),
        config_dir=args.config_dir,
        template_dir=args.template_dir,
        reuse_output=getattr(args, "reuse_output", False),
        refresh_cluster=getattr(args, "refresh_cluster", False),
        dry_run=args.dry_run,
    )


def run(args: Namespace) -> int:
    with phase("imports"):
        from ..submit import notify_job
        from ..submit.prepare import prepare_submit

    prepared = prepare_submit(submit_request(args))
    for line in prepared.warnings:
        err(f"warning: {line}")
    if not args.dry_run:
        prepared.verdict.refuse()
    plan = prepared.plan()
    for line in plan.frozen.warnings:
        err(f"warning: {line}")
    if args.dry_run:
        return dry_run(plan)
    from .common import open_store, report_submitted, wait_until_ended

    store = open_store()
    name, results, njobs = plan.send(store, sys.argv)
    report_submitted(args, name, results, njobs, prepared.local)
    if results:
        partition = prepared.verdict.shapes[0].partition
        notify_job.submit_after(prepared.cfgs[0].spec, name, plan.layout(name), partition, results.values(), err)
    return wait_until_ended(store, [name]) if args.wait else 0


def dry_run(plan: SubmitPlan) -> int:
    """Print the scripts, the summary job and the notes; the same verdict as a submit (errors exit 2, after the
    scripts where they can still be made)."""
    from ..submit import notify_job
    from ..views.plan import print_plan

    prepared = plan.prepared
    try:
        jobs = plan.jobs(plan.preview_name())
    except UserError:
        prepared.verdict.refuse()
        raise
    print_plan(jobs)
    spec0 = prepared.cfgs[0].spec
    if notify_job.wanted(spec0):
        print("# ==== the summary job, submitted after the jobs above (notify.*) ====")
        layout = plan.layout(plan.preview_name())
        print(notify_job.preview(spec0, layout.root.name, layout, prepared.verdict.shapes[0].partition), end="")
    for note in prepared.verdict.notes:
        err(note)
    prepared.verdict.refuse()
    err(f"dry run: {in_jobs(len(prepared.cfgs), len(jobs), prepared.local)}; nothing submitted")
    return 0
