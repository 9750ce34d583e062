"""Which files of a workdir a snapshot freezes, as git sees them.

Inside git: the tracked files and the untracked ones git does not ignore, below the workdir, submodules included
(`git ls-files`, with `.danluignore` files as extra ignore rules). Outside git: every file below the workdir but
those matching DEFAULT_IGNORES or a `.danluignore` (git's own ignore rules, applied through an empty repository).
Either way the ignored entries are listed too: the snapshot points back at them in the live workdir.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import UserError

DANLUIGNORE = ".danluignore"

# what a workdir outside git never freezes: caches, environments, and the usual output and tracking folders
DEFAULT_IGNORES = (
    ".git/",
    "__pycache__/",
    "*.pyc",
    ".venv/",
    "venv/",
    ".tox/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ipynb_checkpoints/",
    "node_modules/",
    "wandb/",
    "lightning_logs/",
    "outputs/",
    "multirun/",
    "mlruns/",
)

# untracked files never frozen, in git too: Python writes them beside the code
ALWAYS_IGNORED = ("__pycache__/", "*.pyc")

# ignored entries the snapshot does not point back at: Python writes them itself, next to the frozen files
NOT_LINKED = ("__pycache__", ".git")


@dataclass
class GitFacts:
    commit: Optional[str]  # HEAD; None outside git or before the first commit
    changed: List[str] = field(default_factory=list)  # workdir paths that differ from HEAD (tracked or untracked)
    prefix: str = ""  # the workdir's path below the top of its repository ('' at the top, or outside git)

    @property
    def dirty(self) -> Optional[bool]:
        return None if self.commit is None else bool(self.changed)


@dataclass
class Listing:
    files: List[str]  # relative to the workdir, '/'-separated
    ignored: List[str]  # ignored entries (a folder ends with '/'), relative to the workdir
    git: GitFacts


def _git(args: Sequence[str], cwd: Path, git_dir: Optional[Path] = None) -> "subprocess.Popen[bytes]":
    prefix = ["git", "--no-optional-locks"]
    if git_dir is not None:
        prefix += [f"--git-dir={git_dir}", f"--work-tree={cwd}"]
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    try:
        return subprocess.Popen(prefix + list(args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except FileNotFoundError:
        raise UserError(
            "freezing the code needs git, and there is no `git` on PATH",
            "install git, or run the workdir as it is with code.freeze=false",
        ) from None


def _too_many(workdir: Path, limit: int) -> UserError:
    return UserError(
        f"the workdir {workdir} holds more than code.max_files={limit} files to freeze",
        "point workdir at your project, list data and outputs in .danluignore (gitignore syntax), or raise "
        "code.max_files",
    )


def _bounded(proc: "subprocess.Popen[bytes]", what: str, workdir: Path, limit: int) -> List[str]:
    """_out of a listing that may be huge (a workdir of data outside git): stopped once past `limit` paths."""
    stdout = proc.stdout
    assert stdout is not None
    chunks: List[bytes] = []
    seen = 0
    for chunk in iter(lambda: stdout.read(1 << 16), b""):
        chunks.append(chunk)
        seen += chunk.count(b"\0")
        if seen > limit:
            proc.kill()
            proc.communicate()
            raise _too_many(workdir, limit)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise UserError(
            f"`git {what}` failed while freezing the code: {err.decode(errors='replace').strip()[:300]}",
            "fix the repository (or run the workdir as it is with code.freeze=false)",
        )
    return [p for p in b"".join(chunks).decode("utf-8", "surrogateescape").split("\0") if p]


def _out(proc: "subprocess.Popen[bytes]", what: str) -> List[str]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise UserError(
            f"`git {what}` failed while freezing the code: {err.decode(errors='replace').strip()[:300]}",
            "fix the repository (or run the workdir as it is with code.freeze=false)",
        )
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def _head(workdir: Path) -> Tuple[bool, Optional[str], str]:
    """(inside git, HEAD or None, the workdir's path below the top of its repository)."""
    proc = _git(["rev-parse", "--show-prefix", "--verify", "-q", "HEAD"], workdir)
    out, _ = proc.communicate()
    lines = out.decode("utf-8", "surrogateescape").splitlines()
    if proc.returncode == 0 and len(lines) == 2:
        return True, lines[1], lines[0]
    probe = _git(["rev-parse", "--show-prefix"], workdir)
    out, _ = probe.communicate()
    if probe.returncode != 0:
        return False, None, ""
    return True, None, out.decode("utf-8", "surrogateescape").strip()


def _anchored(prefix: str, excluded: Sequence[str]) -> List[str]:
    """-x patterns for folders below the workdir (the runs folder), anchored at the top of the repository."""
    return [f"-x/{prefix}{e.strip('/')}/" for e in excluded]


def _submodule_files(workdir: Path, files: List[str]) -> List[str]:
    """Tracked entries that are folders are submodules: their own tracked files, as paths of this workdir."""
    out: List[str] = []
    top = str(workdir)
    for entry in files:
        path = f"{top}/{entry}"
        if os.path.isdir(path) and not os.path.islink(path):
            inner = _out(_git(["ls-files", "-z", "-c", "--recurse-submodules"], Path(path)), "ls-files (submodule)")
            out.extend(f"{entry}/{f}" for f in inner)
        else:
            out.append(entry)
    return out


def _in_git(workdir: Path, commit: Optional[str], prefix: str, excluded: Sequence[str], limit: int) -> Listing:
    excl = _anchored(prefix, excluded) + [f"-x{p}" for p in ALWAYS_IGNORED]
    listed = _git(["ls-files", "-z", "-t", "-c", "-o", "--exclude-standard", *excl], workdir)
    ignored = _git(["ls-files", "-z", "-o", "-i", "--directory", "--exclude-standard", *excl], workdir)
    changed = _git(["diff", "--name-only", "-z", "--relative", "HEAD", "--", "."], workdir) if commit else None
    tagged = _bounded(listed, "ls-files", workdir, limit)
    tracked = [t[2:] for t in tagged if not t.startswith("? ")]
    untracked = [t[2:] for t in tagged if t.startswith("? ")]
    facts = GitFacts(commit, sorted(set(untracked) | set(_out(changed, "diff") if changed else [])), prefix)
    files = _submodule_files(workdir, tracked) + untracked
    ignored_entries = _out(ignored, "ls-files --ignored")
    if any(Path(f).name == DANLUIGNORE for f in files):
        own = _git(["ls-files", "-z", "-c", "-o", "-i", f"--exclude-per-directory={DANLUIGNORE}", *excl], workdir)
        dropped = set(_out(own, "ls-files (.danluignore)"))
        ignored_entries += sorted(dropped)
        files = [f for f in files if f not in dropped]
    return Listing(files, ignored_entries, facts)


def _outside_git(workdir: Path, excluded: Sequence[str], limit: int) -> Listing:
    """git's ignore rules through an empty repository of its own, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="danlu-empty-") as scratch:
        repo = Path(scratch) / "empty.git"
        subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True, capture_output=True)
        rules = [f"-x{p}" for p in DEFAULT_IGNORES] + _anchored("", excluded)
        common = ["ls-files", "-z", "-o", f"--exclude-per-directory={DANLUIGNORE}", *rules]
        listed = _git(common, workdir, repo)
        ignored = _git(common + ["-i", "--directory"], workdir, repo)
        files = _bounded(listed, "ls-files", workdir, limit)
        return Listing(files, _out(ignored, "ls-files --ignored"), GitFacts(None))


def _ignored_by(rules: Sequence[str], rel: str, is_dir: bool) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for rule in rules:
        if rule.endswith("/") and not is_dir:
            continue
        pattern = rule.strip("/")
        if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(rel, pattern):
            return True
    return False


def _walk_without_git(workdir: Path, excluded: Sequence[str], limit: int) -> Listing:
    """Without git on PATH: every file but DEFAULT_IGNORES and the top .danluignore's patterns (fnmatch)."""
    try:
        own = [ln.strip() for ln in (workdir / DANLUIGNORE).read_text().splitlines()]
    except OSError:
        own = []
    rules = list(DEFAULT_IGNORES) + [r for r in own if r and not r.startswith("#")]
    skipped = {e.strip("/") for e in excluded}
    files: List[str] = []
    ignored: List[str] = []
    for top, dirs, names in os.walk(workdir):
        base = os.path.relpath(top, workdir).replace(os.sep, "/")
        base = "" if base == "." else base + "/"
        for d in list(dirs):
            if base + d in skipped or _ignored_by(rules, base + d, True):
                dirs.remove(d)
                ignored.append(base + d + "/")
        for n in names:
            (ignored if _ignored_by(rules, base + n, False) else files).append(base + n)
        if len(files) > limit:
            raise _too_many(workdir, limit)
    return Listing(sorted(files), sorted(ignored), GitFacts(None))


def list_workdir(workdir: Path, excluded: Sequence[str], limit: int = 20_000) -> Listing:
    """The files to freeze and the entries left in place. `excluded`: folders below the workdir never frozen (the
    runs folder and its code store), relative to it. More than `limit` files are refused as soon as they are seen."""
    if shutil.which("git") is None:
        return _walk_without_git(workdir, excluded, limit)
    inside, commit, prefix = _head(workdir)
    if inside:
        return _in_git(workdir, commit, prefix, excluded, limit)
    return _outside_git(workdir, excluded, limit)


def linked_back(ignored: Sequence[str]) -> List[str]:
    """The ignored entries a snapshot points back at (not Python's caches or git's folder)."""
    return [e for e in ignored if not set(e.rstrip("/").split("/")) & set(NOT_LINKED) and not e.endswith(".pyc")]


def relative_inside(path: Path, workdir: Path) -> Optional[str]:
    """`path` relative to `workdir` when it lies inside it, else None."""
    try:
        rel = path.resolve().relative_to(workdir)
    except ValueError:
        return None
    return str(rel) if str(rel) != "." else ""


def sizes(workdir: Path, files: Sequence[str]) -> Dict[str, os.stat_result]:
    """lstat of each listed file that still exists (a tracked file deleted in the workdir is left out)."""
    out: Dict[str, os.stat_result] = {}
    top = str(workdir)
    for f in files:
        try:
            out[f] = os.lstat(f"{top}/{f}")
        except FileNotFoundError:
            continue
    return out
