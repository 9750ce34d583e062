"""New attempts of runs (`danlu rerun`): each run's overrides with the rerun's on top, composed, checked and placed
like a submit's runs, in the run's own directory."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from ..backends import for_spec
from ..layout import RunLayout
from ..plan.planner import PlannedRun, place
from ..spec.compose import Composer
from ..spec.overrides import merge_overrides
from ..spec.validate import check
from ..state.machine import failed_nodes
from ..state.names import RERUNNABLE
from .ownership import refuse_unsafe_sweeps


def plan_attempts(
    store: Any, chosen: Sequence[Any], composer: Composer, given: Sequence[str], exclude_failed_nodes: bool
) -> Tuple[List[PlannedRun], Dict[str, int]]:
    """The next attempt of each chosen run (store rows of its latest attempt), and the attempt each one is at now
    (a rerun records its attempts only if no other danlu got there first). Their stop graces are not read here:
    `with_stop_graces` adds them once the live cluster's facts are known."""
    planned: List[PlannedRun] = []
    expect: Dict[str, int] = {}
    for r in chosen:
        overrides = merge_overrides(json.loads(r["overrides"]), list(given))
        if exclude_failed_nodes:
            bad = sorted({n for a in store.attempts(r["run"]) if a["state"] in RERUNNABLE for n in failed_nodes(a, r)})
            if bad:  # quoted: a plain node1,node2 would be a sweep to Hydra, and node[1-2] a list
                overrides = merge_overrides(overrides, [f"resources.exclude='{','.join(bad)}'"])
        (cfg,) = composer.runs(overrides, multirun=False)
        cfg.overrides = overrides  # as typed (quotes kept): the run's row keeps them and the next rerun starts there
        verdict = check([cfg.spec])
        verdict.refuse()  # the same verdict with --dry-run
        (shp,) = verdict.shapes
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
            )
        )
        expect[r["run"]] = r["attempt"]
    refuse_unsafe_sweeps(p.layout.sweep.root for p in planned)  # folders another user could write
    return planned, expect


def with_stop_graces(planned: Sequence[PlannedRun], facts: Any) -> List[PlannedRun]:
    """The runs with the cluster's stop grace of their place (cluster_facts.stop_graces: from the cached facts where
    they say it all, else asked once per partition and QOS)."""
    from ..cluster_facts import stop_graces

    places = {place(p.spec, p.shape) for p in planned if for_spec(p.spec).in_slurm}
    graces = stop_graces(places, facts) if places else {}
    return [
        replace(p, stop_grace_s=graces.get(place(p.spec, p.shape))) if for_spec(p.spec).in_slurm else p for p in planned
    ]
