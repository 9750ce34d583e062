"""`danlu rerun SWEEP|RUN`: new attempts of the runs that ended badly, planned like a submit, in their own run dirs."""

from __future__ import annotations

from argparse import Namespace
from typing import Dict, List

from ..errors import NothingToDo, UserError
from .output import err


def run(args: Namespace) -> int:
    from ..plan.planner import plan_jobs
    from ..spec.compose import Composer
    from ..state.names import ACTIVE, RERUNNABLE
    from ..state.reconcile import refresh
    from ..submit import notify_job
    from ..submit.execute import new_token
    from ..submit.live_checks import against_the_live_cluster
    from ..submit.prepare import check_template_dir
    from ..submit.rerun import plan_attempts
    from ..views.plan import print_plan
    from .common import in_jobs, open_store, report_submitted, wait_until_ended

    choices = RERUNNABLE + ("CANCELLED", "UNSUBMITTED")
    cont = getattr(args, "cont", False)
    if cont and args.state:
        raise UserError(
            "--continue takes COMPLETED runs; --state does not go with it",
            "drop --state (or rerun failed runs without --continue)",
        )
    if cont and not args.overrides:
        raise UserError(
            "--continue without overrides would end at once: the run already completed",
            "say what to train further, e.g. danlu rerun RUN --continue args.max_train_steps=4000",
        )
    states = (
        ("COMPLETED",)
        if cont
        else tuple(s.strip().upper() for s in args.state.split(","))
        if args.state
        else RERUNNABLE
    )
    for s in states if not cont else ():
        if s == "COMPLETED" or s in ACTIVE:
            raise UserError(
                f"--state {s}: danlu never reruns runs that completed or are still queued/running",
                f"choose among {', '.join(choices)}",
            )
        if s not in choices:
            raise UserError(f"unknown state {s!r} for --state", f"choose among {', '.join(choices)}")
    store = open_store()
    sweeps, runs = store.resolve([args.target])
    rows = refresh(store, store.latest(sweeps=sweeps, runs=runs)).rows
    # a run is rerun only once its state is final (state/machine.py): a PREEMPTED job that Slurm still holds
    # will start again by itself, and a rerun would put a second copy of it into the same run directory
    held = [r for r in rows if r["state"] in states and not r["final"]]
    chosen = [r for r in rows if r["state"] in states and r["final"]]
    if held and not chosen:
        first = held[0]
        raise UserError(
            f"{first['run']} is {first['state']} but Slurm still holds job {first['job_id']} and may "
            f"start it again" + (f" ({len(held) - 1} more like it)" if len(held) > 1 else ""),
            "wait until `danlu status` shows it final (or requeued and running), or `danlu cancel` it first",
        )
    for r in held:
        err(f"not rerun: {r['run']} is {r['state']} but Slurm still holds job {r['job_id']} and may start it again")
    if not chosen:
        counts: Dict[str, int] = {}
        for r in rows:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        if cont:
            raise NothingToDo(
                f"nothing to continue in {args.target}: {summary}",
                "--continue trains COMPLETED runs further; failed ones: danlu rerun without it",
            )
        raise NothingToDo(
            f"nothing to rerun in {args.target}: {summary}",
            "only runs whose latest attempt ended " + "/".join(states) + " are rerun (see --state)",
        )
    # the original submit's configs and templates, unless this rerun names its own
    check_template_dir(args.template_dir)
    composer, template_dir = Composer.of_sweep(store.sweep(chosen[0]["sweep"]), args.config_dir, args.template_dir)
    planned, expect = plan_attempts(store, chosen, composer, args.overrides, args.exclude_failed_nodes)
    # the live cluster's word on these runs: the profile's contradictions, the submit limit
    problems: List[UserError] = []
    warnings, _facts = against_the_live_cluster(
        [p.cfg for p in planned], [p.shape for p in planned], problems, args.refresh_cluster, keep=not args.dry_run
    )
    for line in warnings:
        err(f"warning: {line}")
    if problems:
        raise problems[0]
    token = new_token()
    label = chosen[0]["sweep"] if len({r["sweep"] for r in chosen}) == 1 else "rerun"
    jobs = plan_jobs(token, planned, template_dir)
    if args.dry_run:
        print_plan(jobs)
        err(f"dry run: would rerun {in_jobs(len(planned), len(jobs), all(j.local for j in jobs))}; nothing submitted")
        return 0
    from ..submit.sweep import submit_rerun

    results = submit_rerun(store, token, label, jobs, args.overrides, expect)
    report_submitted(args, label, results, len(jobs), all(j.local for j in jobs))
    if label != "rerun":  # the sweep's summary (notify.*) once more, after these
        notify_job.submit_after(
            jobs[0].spec, label, jobs[0].sweep_layout, jobs[0].runs[0].shape.partition, results.values(), err
        )
    return wait_until_ended(store, [], list(results)) if args.wait else 0
