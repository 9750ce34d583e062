"""How a job reaches submitit's runner: in Slurm (danlu's rendered script, node agents pickled by submitit) or on
this machine (submitit's local executor). The backends (slurm_backend.py, local_backend.py) call these.

For Slurm, submitit has no public way to hand sbatch a script of one's own for a job array (its array path
builds a fresh executor with submitit's own script), so danlu does what that path does with submitit's public
pieces: each array task's node agent is pickled with `DelayedSubmission`, under a name the script knows before
sbatch runs (`<stem>.<task>.pkl`, launcher/layout.py), and the job side (`python -m launcher.job`) puts it where
submitit's runner (`process_job`) looks for it. tests/test_submitit_contract.py fails when those pieces change.

The pickles are written before the script's final text: the script carries each one's SHA-256, which the job side
checks before it unpickles (launcher/job/protocol.py). Slurm's copy of the script cannot change once sbatch ran.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from .. import slurm
from ..timings import phase


def shared_agent(agents: Sequence[Any]) -> Optional[Any]:
    """The one agent every task of an array can run when the agents differ only in their run (the job side then
    takes its run from DANLU_RUN_ID); None when they differ in more."""
    alike = [dataclasses.replace(a, run_id="") for a in agents]
    return alike[0] if alike and all(a == alike[0] for a in alike) else None


def pickle_agents(
    agents: Sequence[Any], paths: Sequence[Path], timeout_min: int, shared: Optional[Path] = None
) -> List[str]:
    """Pickle each node agent with submitit (cloudpickle), as its job side will load it; returns the SHA-256 of
    each file written, in task order. `shared`: where to write one agent for all tasks instead, when they differ
    only in their run (a 1,000-task array: one file, not 1,000)."""
    import cloudpickle
    from submitit.core.utils import DelayedSubmission

    one = shared_agent(agents) if shared is not None else None
    if shared is not None and one is not None:
        agents, paths = [one], [shared]
    hashes = []
    for agent, path in zip(agents, paths, strict=True):
        delayed = DelayedSubmission(agent)
        delayed.set_timeout(timeout_min, 0)  # danlu's agent handles time limits itself: no submitit requeue
        data = cloudpickle.dumps(delayed, pickle.HIGHEST_PROTOCOL)  # the bytes DelayedSubmission.dump writes
        path.write_bytes(data)
        hashes.append(hashlib.sha256(data).hexdigest())  # of the bytes meant, not of what the file holds now
    return hashes


def submit_slurm(
    script: Path,
    text: Callable[[List[str]], str],
    agents: Sequence[Any],
    pickles: Sequence[Path],
    timeout_min: int,
    shared: Optional[Path] = None,
) -> str:
    """One sbatch call for one job (an array when there are several agents); returns the (array) job id.
    `text` gives the rendered script with the pickles' SHA-256 in their placeholders' places."""
    with phase("pickles"):
        hashes = pickle_agents(agents, pickles, timeout_min, shared)
    script.write_text(text(hashes))
    script.chmod(0o600)
    with phase("sbatch"):
        return slurm.sbatch(script)


def submit_local(folder: Path, setup: List[str], agent: Any, tasks: int, timeout_min: int) -> str:
    """Start the run on this machine through submitit's local executor; returns its job id (pid)."""
    import submitit

    # isolated (-I): a `launcher` module in the folder danlu runs from never takes the place of danlu's job side
    executor = submitit.LocalExecutor(folder=folder, python=f"{shlex.quote(sys.executable)} -I")
    executor.update_parameters(tasks_per_node=tasks, timeout_min=timeout_min, setup=setup, gpus_per_node=0)
    job = executor.submit(agent)
    return str(job.job_id)
