"""Section 2, controller load: slurmctld RPCs counted by sdiag (bench/status_rpcs.py, bench/job_rpcs.py) per submit
of a 1,000-run sweep, per status refresh with 1,000 active runs, per minute of --watch, per 2-node job -- next to a
shell loop, `watch squeue`, submitit's polling and a hand-written script."""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Dict, List

from bench import job_rpcs, status_rpcs
from bench.paths import DANLU, REPO
from bench.results import Results, Row
from bench.session import Session
from bench.shell import array_ids, cancel, log, sh, wait_nodes_idle, wait_queue_empty
from bench.sweep import submit_argv

OWN = "job's own"


def _by_type(counts: Dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _submit_rpcs(ses: Session, res: Results, runs: int) -> None:
    """RPCs of one danlu submit of a `runs`-run sweep (the cluster's facts cached first), then of a shell loop of
    as many sbatch."""
    env = ses.private_env("load-submit")
    sh([DANLU, "submit", "experiment=tiny_dpo", "cluster=testcluster", "--dry-run"], env=env)
    first = json.loads(
        sh(
            [
                DANLU,
                "submit",
                "experiment=tiny_dpo",
                "cluster=testcluster",
                "resources.extra_sbatch=[--hold]",
                "--json",
            ],
            env=env,
        ).stdout
    )
    cancel([r["job_id"] for r in first["runs"]])  # the cluster's facts cached, as on every submit within the hour
    wait_queue_empty()
    ids: List[str] = []

    def danlu_submit() -> None:
        ids[:] = array_ids(json.loads(sh([DANLU, *submit_argv(runs)], env=env).stdout)["runs"])

    got = status_rpcs.counted(danlu_submit)
    ses.submitted.extend(ids)
    cancel(ids, arrays=True)
    what = f"slurmctld RPCs: submit a {runs:,}-run sweep"
    res.add(Row("2", what, "danlu submit -m", samples=[sum(got.values())], unit="n", note=_by_type(got)))
    res.figures["rpc_submit"] = sum(got.values())
    wait_queue_empty()
    loop_ids: List[str] = []

    def loop() -> None:
        out = sh(
            [
                "bash",
                "-c",
                f"for i in $(seq {runs}); do sbatch --hold --parsable -p debug-4090-01 -o /dev/null "
                "--wrap true || exit 1; done",
            ]
        ).stdout
        loop_ids[:] = out.split()

    got = status_rpcs.counted(loop)
    ses.submitted.extend(loop_ids)
    cancel(loop_ids)
    res.add(Row("2", "", f"shell loop of {runs:,} `sbatch`", samples=[sum(got.values())], unit="n", note=_by_type(got)))
    res.figures["rpc_submit_loop"] = sum(got.values())


def _status_rpcs(ses: Session, res: Results, runs: int, watch_s: float) -> None:
    """RPCs of a status refresh with `runs` active runs and, unless watch_s is 0, a minute of --watch beside
    `watch squeue` and submitit's polling (bench/status_rpcs.py)."""
    rows = status_rpcs.measure(runs, watch_s, DANLU, Path(tempfile.mkdtemp(dir=ses.tmp)))
    for k, (label, total, by_type, clients) in enumerate(rows):
        what = f"slurmctld RPCs with {runs:,} active runs" if k == 0 else ""
        note = f"{by_type or '-'}; commands: {clients}"
        res.add(Row("2", what, label, samples=[total], unit="n", note=note))
    refresh = rows[0][1]
    res.figures["rpc_refresh"] = refresh
    res.target(
        f"<= 2 slurmctld RPCs per `danlu status` refresh ({runs:,} active runs, {res.version})",
        f"{refresh:g}",
        refresh <= 2,
    )
    if watch_s:
        per_min = rows[1][1]
        res.figures["rpc_watch_min"], res.figures["rpc_watch_squeue_min"] = per_min, rows[2][1]
        res.target(
            f"<= 1 slurmctld RPC per second for `danlu status --watch` ({res.version})",
            f"{per_min:g} per minute ({per_min / 60:.2f} per second)",
            per_min <= 60,
        )


def _job_rpcs(res: Results, job_reps: int) -> None:
    """RPCs of one 2-node x 2-rank job from start to end, danlu's and the hand-written script's (bench/job_rpcs.py)."""
    results: Dict[str, List[Dict[str, int]]] = {"danlu": [], "hand-written sbatch": []}
    for _ in range(job_reps):
        wait_nodes_idle(["node1", "node2"])
        results["danlu"].append(job_rpcs.danlu_job(REPO, "head"))
        wait_nodes_idle(["node1", "node2"])
        results["hand-written sbatch"].append(job_rpcs.handwritten_job())
    med = {}
    for k, (name, deltas) in enumerate(results.items()):
        med[name] = {
            c: statistics.median(job_rpcs.groups(d)[c] for d in deltas) for c in (OWN, "srun", "slurmd", "total")
        }
        res.add(
            Row(
                "2",
                "slurmctld RPCs of one 2-node x 2-rank job, start to end" if k == 0 else "",
                name,
                samples=[med[name]["total"]],
                unit="n",
                note=f"job's own {med[name][OWN]:g}, srun {med[name]['srun']:g}, slurmd {med[name]['slurmd']:g}; "
                + _by_type(dict(sorted(deltas[-1].items(), key=lambda kv: -kv[1]))),
            )
        )
    own = med["danlu"][OWN]
    res.figures["rpc_job_own"], res.figures["rpc_job_srun"] = own, med["danlu"]["srun"]
    res.figures["rpc_job_own_hand"] = med["hand-written sbatch"][OWN]
    res.target(
        f"<= 5 slurmctld RPCs from inside a 2-node job beyond what srun needs ({res.version})",
        f"{own:g} (the job's own; srun {med['danlu']['srun']:g}, slurmd {med['danlu']['slurmd']:g}; "
        f"hand-written: {med['hand-written sbatch'][OWN]:g})",
        own <= 5,
    )


def measure(ses: Session, res: Results, runs: int, watch_s: float, job_reps: int) -> None:
    """slurmctld RPCs (sdiag) per submit of a `runs`-run sweep, per status refresh with `runs` active runs, per
    minute of --watch, per 2-node job -- next to a hand-written script and submitit's polling of the same work."""
    log(
        f"2. controller load (sdiag): submit of {runs:,} runs, status refresh and --watch with {runs:,} active runs, "
        f"a 2-node job ({job_reps} times)"
    )
    if not wait_queue_empty():
        res.notes.append(
            f"controller load ({res.version}) not measured: the queue never emptied (others' jobs would count)"
        )
        return
    _submit_rpcs(ses, res, runs)
    wait_queue_empty()
    _status_rpcs(ses, res, runs, watch_s)
    if not job_reps:
        return
    wait_queue_empty()
    _job_rpcs(res, job_reps)
