"""`danlu rerun SWEEP|RUN`: new attempts of the runs that ended badly, planned like a submit, in their own run dirs."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import NothingToDo, UserError
from .output import err


def run(args: Namespace) -> int:
    from .. import slurm
    from ..layout import RunLayout
    from ..plan.planner import PlannedRun, place, plan_jobs
    from ..spec.compose import Composer, merge_overrides
    from ..spec.validate import check
    from ..state.machine import failed_nodes
    from ..state.names import ACTIVE, RERUNNABLE
    from ..state.reconcile import refresh
    from ..submit import notify_job
    from ..submit.execute import new_token
    from ..submit.live_checks import against_the_live_cluster
    from .common import open_store
    from .submit import print_plan

    choices = RERUNNABLE + ("CANCELLED",)
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
    composer, template_dir = Composer.of_sweep(store.sweep(chosen[0]["sweep"]))  # the same configs and templates
    planned: List[PlannedRun] = []
    expect: Dict[str, int] = {}
    graces: Dict[slurm.Place, Optional[int]] = {}
    for r in chosen:
        overrides = merge_overrides(json.loads(r["overrides"]), list(args.overrides))
        if args.exclude_failed_nodes:
            bad = sorted({n for a in store.attempts(r["run"]) if a["state"] in RERUNNABLE for n in failed_nodes(a, r)})
            if bad:  # quoted: a plain node1,node2 would be a sweep to Hydra, and node[1-2] a list
                overrides = merge_overrides(overrides, [f"resources.exclude='{','.join(bad)}'"])
        (cfg,) = composer.runs(overrides, multirun=False)
        verdict = check([cfg.spec])
        verdict.refuse()  # the same verdict with --dry-run
        (shp,) = verdict.shapes
        where = place(cfg.spec, shp)
        if cfg.spec.cluster.kind == "slurm" and where not in graces:
            graces.update(slurm.stop_graces([where]))  # once per partition and QOS
        planned.append(
            PlannedRun(
                run_id=r["run"],
                sweep=r["sweep"],
                idx=r["idx"],
                cfg=cfg,
                shape=shp,
                layout=RunLayout(Path(r["run_dir"])),
                attempt=r["attempt"] + 1,
                workdir=str(Path(cfg.spec.workdir).expanduser().resolve()),
                stop_grace_s=graces.get(where),
            )
        )
        expect[r["run"]] = r["attempt"]
    # the live cluster's word on these runs: the profile's contradictions, the submit limit
    problems: List[UserError] = []
    warnings, _facts = against_the_live_cluster(
        [p.cfg for p in planned], [p.shape for p in planned], problems, False, keep=not args.dry_run
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
        err(f"dry run: would rerun {len(planned)} run(s) in {len(jobs)} job(s); nothing submitted")
        return 0
    from ..submit.sweep import submit_rerun
    from .common import report_submitted

    results = submit_rerun(store, token, label, jobs, args.overrides, expect)
    report_submitted(args, label, results, len(jobs))
    if label != "rerun":  # the sweep's summary (notify.*) once more, after these
        notify_job.submit_after(
            jobs[0].spec, label, jobs[0].sweep_layout, jobs[0].runs[0].shape.partition, results.values(), err
        )
    return 0
