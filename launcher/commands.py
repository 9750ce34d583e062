"""The commands behind the CLI (imported only when a command runs)."""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Any, Dict, List

from .errors import NothingToDo, UserError


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def cmd_submit(args: Namespace) -> int:
    from .config import Composer
    from .submit import PlannedRun, check, new_token, plan_jobs, sweep_dir

    if args.name is not None and not _NAME.match(args.name):
        raise UserError(f"bad sweep name {args.name!r}", "use letters, digits, '.', '_' and '-' (at most 64)")
    if args.template_dir and not Path(args.template_dir).expanduser().is_dir():
        raise UserError(f"template dir {args.template_dir!r} does not exist",
                        "pass --template-dir a folder with your copies of templates/*.j2")
    cfgs = Composer(args.config_dir).runs(args.overrides, args.multirun)
    shapes, warnings = check(cfgs, strict_files=not args.dry_run)
    spec0 = cfgs[0].spec
    base = args.name or spec0.name or spec0.experiment
    if not _NAME.match(base):
        raise UserError(f"bad sweep name {base!r}", "set --name with letters, digits, '.', '_' and '-'")
    explicit = bool(args.name or spec0.name)
    token = new_token()

    def plan(name: str) -> tuple:
        planned = []
        for i, (cfg, shp) in enumerate(zip(cfgs, shapes)):
            sdir = sweep_dir(cfg.spec, name)
            planned.append(PlannedRun(run_id=f"{name}/{i}", idx=i, cfg=cfg, shape=shp, run_dir=str(sdir / str(i)),
                                      workdir=str(Path(cfg.spec.workdir).expanduser().resolve())))
        return planned, plan_jobs(name, token, planned, args.template_dir)

    if args.dry_run:
        for w in warnings:
            _err(f"warning: {w.message} ({w.hint})")
        name = base if explicit else f"{base}-xxxx"
        planned, jobs = plan(name)
        for k, job in enumerate(jobs):
            if len(jobs) > 1:
                print(f"# ==== job {k + 1} of {len(jobs)}: {len(job.runs)} run(s) ====")
            print(job.script, end="")
        _err(f"dry run: {len(planned)} run(s) in {len(jobs)} job(s); nothing submitted")
        return 0

    from .reconcile import reconcile_submitting, token_lock
    from .store import Store

    store = Store()
    reconcile_submitting(store)
    with token_lock(store, token):  # held while this submission's SUBMITTING rows exist
        return _submit_locked(args, store, token, base, explicit, spec0, plan)


def _submit_locked(args: Namespace, store: Any, token: str, base: str, explicit: bool, spec0: Any, plan: Any) -> int:
    from .submit import store_rows, sweep_dir

    for _ in range(20):
        name = base if explicit else f"{base}-{secrets.token_hex(2)}"
        if store.sweep_exists(name):
            if explicit:
                raise UserError(f"a sweep named {name!r} exists already", "pick another --name, or rerun it with `danlu rerun`")
            continue
        planned, jobs = plan(name)
        new_runs = store_rows(jobs)
        if store.create_sweep(name, spec0.experiment, spec0.cluster.name, args.overrides, sys.argv,
                              str(sweep_dir(spec0, name)), new_runs):
            break
        if explicit:
            raise UserError(f"a sweep named {name!r} exists already", "pick another --name")
    else:
        raise RuntimeError("could not reserve a sweep name")
    results = _execute_all(store, name, token, jobs)
    _report(args, name, results, len(jobs))
    if getattr(args, "wait", False):
        from .status import wait_for

        return wait_for(store, [name])
    return 0


def _execute_all(store: Any, sweep: str, token: str, jobs: List[Any]) -> Dict[str, str]:
    """Submit planned jobs, one sbatch each, recording each job as soon as Slurm accepts it."""
    from .submit import execute, job_tag

    results: Dict[str, str] = {}
    progress = len(jobs) > 3 and sys.stderr.isatty()
    try:
        for k, job in enumerate(jobs):
            job_id = execute(job)
            array = len(job.runs) > 1
            store.record_job(job_tag(job), job_id, array)
            for i, r in enumerate(job.runs):
                results[r.run_id] = f"{job_id}_{i}" if array else job_id
            if progress:
                print(f"\rsubmitted {k + 1}/{len(jobs)} jobs", end="", file=sys.stderr, flush=True)
    except Exception as e:
        store.drop_unsubmitted(token)
        detail = " ".join(str(e).split())[:400]
        raise SubmitFailed(f"submission failed after {len(results)} run(s) were accepted: {detail}",
                           _submit_failed_hint(detail, sweep, bool(results))) from None
    finally:
        if progress:
            print(file=sys.stderr)
    return results


class SubmitFailed(Exception):
    """sbatch refused a job part-way through a submit; carries a hint for the researcher."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def _submit_failed_hint(detail: str, sweep: str, some_accepted: bool) -> str:
    kept = (f"the accepted runs stay queued under {sweep} (danlu status {sweep}); the others were not recorded"
            if some_accepted else "nothing was queued or recorded")
    if "temporarily unavailable" in detail or "queue full" in detail:
        return (f"the controller's job table is full (MaxJobCount counts every array task): "
                f"wait for jobs to end, then submit again; {kept}")
    return kept


def _report(args: Namespace, sweep: str, results: Dict[str, tuple], njobs: int) -> None:
    runs = [{"run": run, "job_id": jid} for run, jid in results.items()]
    if getattr(args, "json", False):
        print(json.dumps({"sweep": sweep, "runs": runs}))
    else:
        for r in runs:
            print(f"{r['run']}\t{r['job_id']}")
    _err(f"submitted {sweep}: {len(runs)} run(s) in {njobs} job(s)")


def _store_errors(fn: Any) -> Any:
    """A store that breaks while being read (corrupted pages) is bad input: exit 2 with a hint."""
    import functools
    import sqlite3

    @functools.wraps(fn)
    def wrapper(args: Namespace) -> int:
        try:
            return fn(args)
        except sqlite3.DatabaseError as e:
            from .store import default_path

            raise UserError(f"the run store {str(default_path())!r} is unreadable: {e}",
                            "move the file aside (it may be corrupted) or point DANLU_STORE at another store") from None
    return wrapper


def cmd_options(args: Namespace) -> int:
    from .options import RunSpec, describe

    rows = describe(RunSpec)
    if args.json:
        print(json.dumps([{"key": k, "default": d, "help": h} for k, d, h in rows], indent=1))
        return 0
    width = max(len(k) for k, _, _ in rows)
    for k, d, h in rows:
        print(f"{k:<{width}}  {d:<14} {h}")
    return 0


@_store_errors
def cmd_show(args: Namespace) -> int:
    from .status import launched_commands, refresh

    store = _open_store()
    row = store.run(args.run)
    if row is None:
        raise UserError(f"no run named {args.run!r}", "`danlu status --all` lists runs (ids look like sweep/3)")
    refresh(store, store.latest(runs=[args.run]))  # the latest attempt's state as Slurm has it now
    sweep = store.sweep(row["sweep"])
    attempts = store.attempts(args.run)
    latest = attempts[-1]
    script = ""
    if latest["script"]:
        try:
            script = Path(latest["script"]).read_text()
        except OSError as e:
            script = f"(script unreadable: {e})"
    data = {
        "run": row["run"], "sweep": row["sweep"], "experiment": sweep["experiment"] if sweep else None,
        "cluster": sweep["cluster"] if sweep else None, "overrides": json.loads(row["overrides"]),
        "config": json.loads(row["config"]), "run_dir": row["run_dir"], "workdir": row["workdir"],
        "git": {"commit": row["git_commit"], "dirty": None if row["git_dirty"] is None else bool(row["git_dirty"])},
        "command": latest["command"], "script_path": latest["script"],
        "submitted_with": json.loads(sweep["argv"]) if sweep else None,
        "launched": launched_commands(row["run_dir"], latest["attempt"]),
        "attempts": [{k: a[k] for k in ("attempt", "job_id", "state", "reason", "exit_code", "nodelist", "partition",
                                         "submitted", "started", "ended", "elapsed", "restarts", "script", "command")}
                     | {"overrides": json.loads(a["overrides"] or "[]")}
                     for a in attempts],
    }
    if args.json:
        print(json.dumps(data | {"script": script}, indent=1))
        return 0
    import yaml

    print(f"run:       {data['run']}")
    print(f"overrides: {' '.join(data['overrides'])}")
    print(f"run dir:   {data['run_dir']}")
    print(f"workdir:   {data['workdir']}")
    git = data["git"]
    print(f"git:       {git['commit'] or '(not a git checkout)'}{' (dirty)' if git['dirty'] else ''}")
    print(f"command:   {data['command']}")
    for node, cmd in sorted(data["launched"].items()):
        print(f"  {node}: {cmd}")
    print("attempts:")
    for a in data["attempts"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(a["submitted"])) if a["submitted"] else "-"
        extra = f"  overrides: {' '.join(a['overrides'])}" if a["overrides"] else ""
        print(f"  {a['attempt']}: job {a['job_id'] or '-'}  {a['state']}  {a['reason'] or ''}  submitted {when}"
              f"  nodes {a['nodelist'] or '-'}  requeues {a['restarts'] or 0}{extra}")
    print("config:")
    print("  " + yaml.safe_dump(data["config"], sort_keys=False).replace("\n", "\n  ").rstrip())
    print(f"script ({data['script_path']}):")
    print(script, end="")
    return 0


def _open_store() -> Any:
    from .reconcile import reconcile_submitting
    from .store import Store

    store = Store()
    try:
        reconcile_submitting(store)
    except Exception as e:  # recovery is best effort; status must still answer
        _err(f"warning: could not check for unrecorded submissions: {e}")
    return store


def _check_states(states: str | None) -> None:
    from .status import SHORT

    if not states:
        return
    for s in states.split(","):
        s = s.strip().upper()
        if s and s not in SHORT and s not in SHORT.values():
            raise UserError(f"unknown state {s!r}", "use Slurm state names such as PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, CANCELLED")


@_store_errors
def cmd_status(args: Namespace) -> int:
    from .status import as_dicts, filter_items, refresh, render_plain, select

    _check_states(args.state)
    store = _open_store()
    if args.watch and not args.json:  # live table on a terminal, plain blocks otherwise (launcher/watch.py)
        from .watch import watch

        return watch(store, args)
    while True:
        rows = refresh(store, select(store, args.names, args.all, args.state))
        items = filter_items(as_dicts(rows), args.names, args.all, args.state)
        if args.json:
            print(json.dumps(items), flush=True)
        else:
            print(render_plain(items))
        from .status import NOTES

        for note in NOTES:
            _err(f"warning: {note}")
        if not args.watch:
            return 0
        time.sleep(args.interval)


@_store_errors
def cmd_cancel(args: Namespace) -> int:
    import getpass
    import os
    import signal

    from . import slurm
    from .status import _finish, refresh
    from .store import TERMINAL

    store = _open_store()
    sweeps, runs = store.resolve(args.names)
    rows = refresh(store, store.latest(sweeps=sweeps, runs=runs))
    live = [r for r in rows if r["state"] not in TERMINAL and r["job_id"]]
    if not live:
        raise NothingToDo(f"nothing to cancel: {', '.join(args.names)} already ended", "`danlu status --all` shows their states")
    slurm_rows = [r for r in live if not r["job_id"].startswith("local-")]
    # a whole array by its array job id when every task of it is being cancelled: one short scancel
    ids = set()
    by_array: Dict[str, List[Any]] = {}
    for r in slurm_rows:
        if r["array_job_id"]:
            by_array.setdefault(r["array_job_id"], []).append(r)
        else:
            ids.add(r["job_id"])
    for array_id, members in by_array.items():
        if len(members) == store.array_size(array_id):
            ids.add(array_id)
        else:
            ids.update(m["job_id"] for m in members)
    slurm.scancel(sorted(ids))
    for r in live:
        if r["job_id"].startswith("local-"):
            try:
                os.killpg(int(r["job_id"].split("-", 1)[1]), signal.SIGTERM)
            except (ProcessLookupError, ValueError, PermissionError):
                pass
    # scancel is silent about jobs that ended in the meantime: ask the controller how each one ended
    try:
        queue = slurm.squeue([r["job_id"] for r in slurm_rows])
    except slurm.SlurmUnavailable:
        queue = {}
    who = f"cancelled by {getpass.getuser()} (danlu cancel)"
    updates, cancelled, ended = [], [], []
    for r in live:
        q = queue.get(r["job_id"])
        state = slurm.base_state(q.state) if q else ""
        if q is not None and state in TERMINAL and state != "CANCELLED":
            upd = _finish(r, q.state, "", q.nodelist, None, elapsed=q.elapsed)
            ended.append((r, state))
        else:
            upd = {"state": "CANCELLED", "reason": who, "ended": time.time()}
            cancelled.append(r)
        updates.append(upd | {"run": r["run"], "attempt": r["attempt"]})
    store.update_attempts(updates)
    for r in cancelled:
        print(f"{r['run']}\t{r['job_id']}\tCANCELLED")
    for r, state in ended:
        print(f"{r['run']}\t{r['job_id']}\t{state}")
    _err(f"cancelled {len(cancelled)} run(s)" + (f"; {len(ended)} had ended already" if ended else ""))
    return 0


@_store_errors
def cmd_logs(args: Namespace) -> int:
    from .logs import show_logs

    store = _open_store()
    return show_logs(store, args)


RERUNNABLE = ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED")


def _merge_overrides(original: List[str], new: List[str]) -> List[str]:
    """Original overrides with the new ones applied on top (a key given again is replaced)."""
    def key(o: str) -> str:
        return o.split("=", 1)[0].lstrip("+~")

    replaced = {key(o) for o in new}
    return [o for o in original if key(o) not in replaced] + list(new)


def cmd_rerun(args: Namespace) -> int:
    from .config import Composer
    from .reconcile import token_lock
    from .status import refresh
    from .store import ACTIVE
    from .submit import PlannedRun, check, new_token, plan_jobs, store_rows

    states = tuple(s.strip().upper() for s in args.state.split(",")) if args.state else RERUNNABLE
    for s in states:
        if s == "COMPLETED" or s in ACTIVE:
            raise UserError(f"--state {s}: danlu never reruns runs that completed or are still queued/running",
                            f"choose among {', '.join(RERUNNABLE + ('CANCELLED',))}")
        if s not in RERUNNABLE + ("CANCELLED",):
            raise UserError(f"unknown state {s!r} for --state", f"choose among {', '.join(RERUNNABLE + ('CANCELLED',))}")
    store = _open_store()
    sweeps, runs = store.resolve([args.target])
    rows = refresh(store, store.latest(sweeps=sweeps, runs=runs))
    chosen = [r for r in rows if r["state"] in states]
    if not chosen:
        counts: Dict[str, int] = {}
        for r in rows:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        raise NothingToDo(f"nothing to rerun in {args.target}: {summary}",
                          "only runs whose latest attempt ended " + "/".join(states) + " are rerun (see --state)")
    composer = Composer()
    planned: List[PlannedRun] = []
    expect: Dict[str, int] = {}
    for r in chosen:
        overrides = _merge_overrides(json.loads(r["overrides"]), list(args.overrides))
        if args.exclude_failed_nodes:
            bad = sorted({a["nodelist"] for a in store.attempts(r["run"]) if a["nodelist"] and a["state"] in RERUNNABLE})
            if bad:
                overrides = _merge_overrides(overrides, [f"resources.exclude={','.join(bad)}"])
        (cfg,) = composer.runs(overrides, multirun=False)
        (shp,), warnings = check([cfg], strict_files=not args.dry_run)
        planned.append(PlannedRun(run_id=r["run"], idx=r["idx"], cfg=cfg, shape=shp, run_dir=r["run_dir"],
                                  workdir=str(Path(cfg.spec.workdir).expanduser().resolve()), attempt=r["attempt"] + 1))
        expect[r["run"]] = r["attempt"]
    token = new_token()
    sweep = chosen[0]["sweep"] if len({r["sweep"] for r in chosen}) == 1 else "rerun"
    jobs = plan_jobs(sweep, token, planned)
    if args.dry_run:
        for job in jobs:
            print(job.script, end="")
        _err(f"dry run: would rerun {len(planned)} run(s) in {len(jobs)} job(s); nothing submitted")
        return 0
    with token_lock(store, token):
        new_runs = store_rows(jobs, git=False)
        if not store.add_attempts(new_runs, list(args.overrides), expect):
            raise UserError("another danlu rerun of these runs got there first", "`danlu status` shows their new attempts")
        results = _execute_all(store, sweep, token, jobs)
    _report(args, sweep, results, len(jobs))
    return 0


def cmd_cluster(args: Namespace) -> int:
    """Partitions with their GPUs total / allocated / free / down, pending jobs and your GPUs."""
    import os

    from . import clusterview, slurm

    try:
        data = clusterview.collect()
    except slurm.SlurmUnavailable as e:
        if "not found" in str(e):
            raise UserError(f"no Slurm here: {e}", "run `danlu cluster` on a login node of your Slurm cluster") from None
        raise
    if args.json:
        print(json.dumps(data, indent=1))
    elif sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        clusterview.render_rich(data)
    else:
        print(clusterview.render_plain(data))
    return 0


def cmd_env(args: Namespace) -> int:
    """`danlu env sync NAME` (uv sync of envs/NAME) and `danlu env list`."""
    from . import envs

    if args.env_command == "sync":
        info = envs.sync(args.name)
        if getattr(args, "json", False):
            print(json.dumps(info))
        else:
            print(info["python"])
        _err(f"synced env {info['name']} in {info['seconds']:.1f} s: {info['venv']} (python {info['python_version']}); "
             f"use it with env=uv env.name={info['name']}")
        return 0
    if args.env_command == "list":
        rows = envs.listing()
        if getattr(args, "json", False):
            print(json.dumps(rows, indent=1))
            return 0
        if not rows:
            raise NothingToDo("no environments (no envs/<name>/pyproject.toml here or in danlu's envs/)",
                              "create envs/NAME/pyproject.toml, then `danlu env sync NAME`")
        width = max(len(r["name"]) for r in rows)
        print(f"{'NAME':<{width}}  SYNCED  PYTHON    DIR")
        for r in rows:
            print(f"{r['name']:<{width}}  {'yes' if r['synced'] else 'no':<6}  {r['python_version'] or '-':<8}  {r['dir']}")
        return 0
    raise UserError("`danlu env` needs an action", "danlu env sync NAME | danlu env list")


def cmd_completion(args: Namespace) -> int:
    """Print the completion script for bash or zsh."""
    from .complete import script

    print(script(args.shell), end="")
    return 0
