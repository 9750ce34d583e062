"""One bench run's own: its scratch folder, the Slurm jobs it submitted (all cancelled at the end), the test
cluster it talks to, and danlu at the commit before this round, checked out beside the final code."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench.paths import REPO, VENV_BIN
from bench.results import Results
from bench.shell import cancel, sh


def _sbatch() -> str:
    return shutil.which("sbatch") or "/usr/bin/sbatch"


@dataclass
class Session:
    """Made by `start`; every measurement takes its folders from it and records the jobs it submits."""

    tmp: Path  # under /tmp: bound into the newer clusters' roots
    sbatch: str = field(default_factory=_sbatch)  # the real sbatch of the cluster in use (use_slurm)
    submitted: List[str] = field(default_factory=list)  # every Slurm job id submitted: cancelled at the end

    @classmethod
    def start(cls) -> "Session":
        return cls(Path(tempfile.mkdtemp(prefix="danlu-bench-", dir="/tmp")))

    def scratch(self, prefix: str) -> Path:
        """A new folder of this run's own, named `<prefix>-...`."""
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.tmp))

    def use_slurm(self, res: Results, version: str) -> None:
        """The Slurm test cluster the following measurements talk to: 22.05 is this machine's own; a newer one's
        client commands run inside its root (tests/cluster/chroot.sh), first in PATH -- as DANLU_TEST_SLURM does."""
        path = [p for p in os.environ["PATH"].split(":") if not p.startswith("/var/tmp/danlu-slurm-")]
        if version != "22.05":
            path.insert(0, f"/var/tmp/danlu-slurm-{version}/bin")
        os.environ["PATH"] = ":".join(path)
        res.version = version
        self.sbatch = _sbatch()
        res.slurm_seen[version] = sh(["sinfo", "--version"], check=False).stdout.strip()

    def private_env(self, name: str, trace: bool = True, shim: Optional[Path] = None) -> Dict[str, str]:
        """A private danlu home, store and runs dir (as tests/danlu_helpers.py's `private_env`), Slurm call
        trace."""
        root = self.scratch(name)
        env = dict(os.environ)
        env.update(
            DANLU_HOME=str(root / "home"),
            DANLU_STORE=str(root / "home" / "store.sqlite"),
            DANLU_RUNS_DIR=str(root / "runs"),
            NO_COLOR="1",
            DANLU_BENCH_ROOT=str(root),
        )
        env.pop("DANLU_TRACE_SLURM", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed by pip: bytecode cached, not compiled each start
        if trace:
            env["DANLU_TRACE_SLURM"] = str(root / "slurm-calls.txt")
        env["PATH"] = ":".join(([str(shim)] if shim else []) + [str(VENV_BIN), os.environ.get("PATH", "")])
        return env

    def make_shim(self, name: str) -> Tuple[Path, Path]:
        """A PATH dir whose `sbatch` logs each call (start/end time, exit code), then runs the real one."""
        d = self.scratch(f"shim-{name}")
        logf = d / "sbatch.log"
        (d / "sbatch").write_text(
            "#!/bin/bash\n"
            f'echo "start $EPOCHREALTIME" >> {logf}\n'
            f'{self.sbatch} "$@"; rc=$?\n'
            f'echo "end $EPOCHREALTIME $rc" >> {logf}\n'
            "exit $rc\n"
        )
        (d / "sbatch").chmod(0o755)
        return d, logf

    def cancel_all(self) -> None:
        if self.submitted:
            cancel(sorted(set(self.submitted)))
        # The test cluster tracks a job's processes by parentage (proctrack/linuxproc): ranks blocked in a
        # collective that torch elastic left behind when the capped hand-written job was cancelled escape it.
        # A real cluster's proctrack/cgroup would kill them; here, kill what still runs from the bench's dirs.
        time.sleep(2)
        subprocess.run(["pkill", "-KILL", "-f", str(self.tmp)], capture_output=True)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


@dataclass(frozen=True)
class Before:
    """danlu at the commit before this round (--before), a git worktree measured beside the final code."""

    commit: str
    path: Path

    @property
    def label(self) -> str:
        """How the rows name it: the commit, at most 10 characters."""
        return self.commit[:10]

    @classmethod
    def checkout(cls, commit: str, ses: Session) -> Optional["Before"]:
        """A checkout of danlu at `commit` in the session's folder; None when git cannot make it."""
        path = ses.tmp / f"at-{commit[:10]}"
        done = sh(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit], check=False)
        return cls(commit, path) if done.returncode == 0 else None

    def remove(self) -> None:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(self.path)], capture_output=True)
