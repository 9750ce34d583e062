"""A submit's (and a rerun's) runs checked against what the live cluster says about itself (cluster_facts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from ..cluster_facts import ClusterFacts, cached, contradictions, grp_tres_problem, submit_limit
from ..errors import UserError

if TYPE_CHECKING:
    from ..spec.compose import RunConfig
    from ..spec.validate import Shape


def against_the_live_cluster(
    cfgs: Sequence[RunConfig], shapes: Sequence[Shape], problems: List[UserError], refresh: bool, keep: bool = True
) -> Tuple[List[str], Optional[ClusterFacts]]:
    """The runs checked against what the live cluster says (cluster_facts, cached an hour): where the profile
    contradicts it (warnings, returned with the facts), MaxArraySize (arrays split at the smaller), a job the
    association's GrpTRES never lets start and the submit limits (problems: nothing is queued)."""
    slurm_cfgs = [c for c in cfgs if c.spec.cluster.kind == "slurm"]
    if not slurm_cfgs:
        return [], None
    profile = slurm_cfgs[0].spec.cluster
    facts = cached(profile.name, refresh=refresh, keep=keep)
    if facts is None:
        return [], None
    used = [s.partition for c, s in zip(cfgs, shapes, strict=True) if c.spec.cluster.kind == "slurm" and s.partition]
    warnings = contradictions(profile, facts, used)
    if facts.max_array_size:
        for c in slurm_cfgs:
            c.spec.cluster.max_array_size = min(c.spec.cluster.max_array_size, facts.max_array_size)
    for c, s in zip(cfgs, shapes, strict=True):
        if c.spec.cluster.kind != "slurm":
            continue
        never = grp_tres_problem(
            facts.grp_tres, s.nodes * s.gpus_per_node, s.gpu_type, s.nodes * s.tasks_per_node * s.cpus_per_task
        )
        if never:
            problems.append(
                UserError(
                    f"{never}: it would pend for ever",
                    "ask for fewer GPUs/CPUs per job (resources.nodes, resources.gpus_per_node), "
                    "or ask your admins to raise the limit",
                )
            )
            break
    why = submit_limit(facts, profile.qos, len(slurm_cfgs))
    if why:
        problems.append(
            UserError(why, "submit fewer runs at once (a smaller sweep), or wait until some of your jobs have ended")
        )
    return warnings, facts
