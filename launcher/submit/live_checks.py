"""A submit's (and a rerun's) runs checked against what the live cluster says about itself (cluster_facts)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from ..backends import for_spec
from ..cluster_facts import ClusterFacts, cached, contradictions, grp_tres_problem, submit_limit
from ..errors import UserError

if TYPE_CHECKING:
    from ..spec.compose import RunConfig
    from ..spec.options import RunSpec
    from ..spec.validate import Shape


def against_the_live_cluster(
    cfgs: Sequence[RunConfig], shapes: Sequence[Shape], problems: List[UserError], refresh: bool, keep: bool = True
) -> Tuple[List[str], Optional[ClusterFacts]]:
    """The runs checked against what the live cluster says (cluster_facts, cached an hour): where the profile
    contradicts it (warnings, returned with the facts), MaxArraySize (arrays split at the smaller), a job the
    association's GrpTRES never lets start and the submit limits (problems: nothing is queued); a request the profile
    allows but the live cluster cannot hold is a problem too (beyond_the_live_cluster)."""
    slurm_cfgs = [c for c in cfgs if for_spec(c.spec).in_slurm]
    if not slurm_cfgs:
        return [], None
    profile = slurm_cfgs[0].spec.cluster
    facts = cached(profile.name, refresh=refresh, keep=keep)
    if facts is None:
        return [], None
    used = [s.partition for c, s in zip(cfgs, shapes, strict=True) if for_spec(c.spec).in_slurm and s.partition]
    warnings = contradictions(profile, facts, used)
    if facts.max_array_size:
        for c in slurm_cfgs:
            c.spec.cluster.max_array_size = min(c.spec.cluster.max_array_size, facts.max_array_size)
    beyond: Dict[Shape, Optional[UserError]] = {}
    for c, s in zip(cfgs, shapes, strict=True):
        if for_spec(c.spec).in_slurm and s not in beyond:  # once per distinct shape: a sweep's runs share few
            problem = beyond[s] = beyond_the_live_cluster(c.spec, s, facts)
            if problem is not None:
                problems.append(problem)
                break
    for c, s in zip(cfgs, shapes, strict=True):
        if not for_spec(c.spec).in_slurm:
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
    if facts.stores_job_env:
        secrets_problem = env_webhook_problem(slurm_cfgs)
        if secrets_problem is not None:
            problems.append(secrets_problem)
        warnings += secrets_in_records(slurm_cfgs)
    why = submit_limit(facts, profile.qos, len(slurm_cfgs))
    if why:
        problems.append(
            UserError(why, "submit fewer runs at once (a smaller sweep), or wait until some of your jobs have ended")
        )
    return warnings, facts


def beyond_the_live_cluster(spec: RunSpec, shp: Shape, facts: ClusterFacts) -> Optional[UserError]:
    """A request the cluster profile allows but the live cluster cannot hold (a profile out of date: it claims 8 GPUs
    per node where the nodes have 4, a partition or GPU type that is gone): the profile's own checks
    (validate.shape) run again with the live partitions in its place, so the same request gets the same refusal,
    saying it is the live cluster's and which profile to update. What no live node has is refused (the largest node
    counts: a partition of mixed nodes takes a job one of them can hold); None where it fits, or where the facts
    do not say (cached by an older danlu)."""
    from dataclasses import replace

    from ..spec.options import PartitionSpec
    from ..spec.validate import shape

    if any(not p.most_gpus for p in facts.partitions.values() if p.nodes):
        return None
    wanted = shp.gpu_type if shp.gpus_per_node > 0 else None  # the type the script asks for (the profile's, if unset)
    live: Dict[str, PartitionSpec] = {}
    for name, p in facts.partitions.items():
        typed = wanted if wanted in p.most_gpus else p.gpu_type
        live[name] = PartitionSpec(
            nodes=len(p.nodes),
            gpus_per_node=p.most_gpus.get(typed or "", p.most_gpus.get("", 0)),
            gpu_type=typed,
            cpus_per_node=p.most_cpus,
            mem_per_node=f"{p.most_mem_mb}M" if p.most_mem_mb else None,
            max_time=p.max_time,
        )
    profile = spec.cluster
    try:
        shape(
            replace(
                spec,
                cluster=replace(profile, partitions=live),
                resources=replace(spec.resources, gpu_type=wanted),
            )
        )
    except UserError as e:
        return UserError(
            f"{e.message} on the live cluster; the profile {profile.name} is out of date",
            f"{e.hint}; update the profile cluster/{profile.name}.yaml "
            f"(`danlu cluster init {profile.name} --force` reads the live cluster)",
        )
    return None


STORES_ENV = (
    "this cluster keeps each job's environment in its accounting (AccountingStoreFlags=job_env; sacct --env-vars)"
)


def env_webhook_problem(cfgs: Sequence[RunConfig]) -> Optional[UserError]:
    """A webhook URL taken from the environment would be kept in Slurm's records with the job's environment."""
    for c in cfgs:
        url = c.spec.notify.url or ""
        if url.startswith("env:"):
            return UserError(
                f"notify.url={url} would put the webhook URL into Slurm's records: {STORES_ENV}",
                "keep the URL in a file only you can read and use notify.url=file:PATH "
                "(e.g. notify.url=file:~/.config/danlu/webhook)",
            )
    return None


def secrets_in_records(cfgs: Sequence[RunConfig]) -> List[str]:
    """A warning naming the secrets of this shell (env.pass_env) that the jobs' environment carries into Slurm's
    records."""
    names = sorted({n for c in cfgs for n in c.spec.env.pass_env if os.environ.get(n)})
    if not names:
        return []
    return [
        f"{', '.join(names)} of this shell will be kept in Slurm's records of these jobs: {STORES_ENV}; "
        "to keep a token out, store it in a file once (huggingface-cli login, wandb login) and unset the variable"
    ]
