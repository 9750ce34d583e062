#!/usr/bin/env python3
"""danlu against the alternatives, side by side, measured in one run on the project's test Slurm clusters.

    python bench/run.py            # everything (~30 min), writes bench/RESULTS.md; installs .venv and the bench
                                   # extra (hydra-submitit-launcher, the alternative of section 1) when missing
    python bench/run.py --quick    # the headline rows only (under 3 minutes; 22.05, no hydra-submitit-launcher)
    python bench/run.py --only startup,submit [--out FILE] [--before COMMIT]
    python bench/run.py --only code --out FILE   # the code snapshot alone: this machine's disk, no cluster started

What it measures, section by section, and which module measures each: the bench package (bench/__init__.py).
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def _in_project_venv() -> None:
    """The bench imports launcher (store population) and runs danlu from the project's venv: run in it."""
    if (
        Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve()
        and VENV_PYTHON.exists()
        and not os.environ.get("DANLU_BENCH_REEXEC")
    ):
        os.environ["DANLU_BENCH_REEXEC"] = "1"
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])


if __name__ == "__main__":
    _in_project_venv()
    # the package `bench` from the repository, not this folder's modules as top-level ones; tests/ for the node waits
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [str(REPO), str(REPO / "tests")] + [p for p in sys.path if p != here]
    from bench.cli import main

    sys.exit(main())
