"""danlu's own job side, frozen at submit like the user's code: a queued job runs the danlu it was submitted with.

The copy holds every module of the `launcher` package (the job side imports only its own and the shared ones, but
the package is small and shared by every submit of the same danlu). A job script starts its parts through
launcher/job/boot.py inside the copy.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .listing import GitFacts, Listing
from .snapshot import Limits, Snapshot, freeze_listing
from .store_layout import CodeLayout

BOOT = "launcher/job/boot.py"


def package_files(root: Path) -> list[str]:
    package = root / "launcher"
    return sorted(str(p.relative_to(root)) for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def freeze_danlu(runs_dir: Path, dry_run: bool = False) -> Snapshot:
    """This danlu's `launcher` package, frozen into the code store of `runs_dir`."""
    root = Path(__file__).resolve().parents[2]
    listing = Listing(package_files(root), [], GitFacts(None))
    return freeze_listing(CodeLayout.of_runs_dir(runs_dir), root, listing, Limits(10, 100), dry_run)


def boot_command(python: str, tree: Path, module: str) -> str:
    """`python -I <tree>/launcher/job/boot.py MODULE`: a job side module, run from the frozen copy."""
    return f"{python} {shlex.quote(str(tree / BOOT))} {module}"
