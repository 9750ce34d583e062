"""What the job side checks before it unpickles its node agent: the submitter's job protocol, and the agent's hash.

The batch script exports both (templates/launch.sh.j2, templates/runs.sh.j2), written at submit.
Slurm keeps its own copy of the script from sbatch on: what it says cannot be changed while the job waits.
The pickle sits in the sweep's folder, where it could be replaced: its SHA-256 must be the one the script carries.
A refusal is one line on stderr, which reaches Slurm's output; state/reasons.py shows it as the run's reason.

Standard library only: this runs on every node before anything else of the job.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping, Optional

from .. import __version__
from ..node_agent import JOB_PROTOCOL, PROTOCOL_VAR, SHA256_PLACEHOLDER, SHA256_VAR, VERSION_VAR


def protocol_refusal(env: Mapping[str, str]) -> Optional[str]:
    """The line refusing a job submitted under another job protocol; None when the protocols agree."""
    theirs = env.get(PROTOCOL_VAR, "")
    if theirs == str(JOB_PROTOCOL):
        return None
    here = f"danlu {__version__} (protocol {JOB_PROTOCOL})"
    if not theirs:
        submitter = "a danlu without a job protocol"
    else:
        submitter = f"danlu {env.get(VERSION_VAR) or '?'} (job protocol {theirs})"
    return f"danlu: this job was submitted by {submitter}; the job side here is {here}: resubmit it"


def version_note(env: Mapping[str, str]) -> Optional[str]:
    """A line saying the job side is another danlu of the same protocol; None when it is the same danlu."""
    theirs = env.get(VERSION_VAR, "")
    if not theirs or theirs == __version__:
        return None
    return f"danlu: submitted by danlu {theirs}, run by danlu {__version__} (same job protocol {JOB_PROTOCOL})"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def agent_refusal(path: Path, env: Mapping[str, str]) -> Optional[str]:
    """The line refusing a pickle whose SHA-256 is not the one the batch script carries; None when it is."""
    expected = env.get(SHA256_VAR, "")
    if not expected or expected == SHA256_PLACEHOLDER:
        return f"danlu: the batch script carries no sha256 of the node agent {path} ({SHA256_VAR}): refusing to run it"
    try:
        found = sha256_of(path)
    except OSError as e:
        return f"danlu: the node agent {path} cannot be read ({e.strerror}): refusing to run it"
    if found != expected.lower():
        return f"danlu: the node agent {path} is not the one submitted (sha256 mismatch): refusing to run it"
    return None
