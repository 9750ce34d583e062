"""Reading frozen code back (login side): a run's snapshot, a frozen file's text, and diffs of snapshots.

`code_diff` compares two snapshots file by file from their manifests: only the paths whose entries differ are read.
`uncommitted_diff` compares a snapshot's files that differed from its commit with that commit, read with git from
the repository of the snapshot's workdir.
"""

from __future__ import annotations

import difflib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .objects import EXECUTABLE, FILE, IGNORED, LIVE, SYMLINK, Entry
from .snapshot import read_manifest
from .store_layout import CodeLayout

BINARY_PROBE = 8192  # a NUL byte among the first this many bytes: a binary file
MODES = {FILE: "100644", EXECUTABLE: "100755", SYMLINK: "120000"}
GIT_KINDS = {"100644": FILE, "100755": EXECUTABLE, "120000": SYMLINK}
SUBMODULE_MODE = "160000"
DEV_NULL = "/dev/null"


@dataclass(frozen=True)
class StoredSnapshot:
    """A snapshot in a runs_dir's code store, as its manifest describes it."""

    key: str
    layout: CodeLayout
    workdir: str
    commit: Optional[str]
    dirty: Optional[bool]
    changed: Tuple[str, ...]  # the workdir's paths that differed from the commit (untracked ones too)
    prefix: str  # the workdir's path below the top of its repository
    entries: Mapping[str, Entry]  # path -> entry

    @property
    def tree(self) -> Path:
        return self.layout.tree(self.key)

    @property
    def short(self) -> str:
        return self.key[:12]


def _entries(rows: Any) -> Dict[str, Entry]:
    out: Dict[str, Entry] = {}
    for row in rows if isinstance(rows, list) else []:
        path, kind, ref, size = row
        if kind != IGNORED:  # a link back to an ignored entry of the workdir: not code
            out[str(path)] = Entry(str(path), str(kind), str(ref), int(size))
    return out


def snapshot_of(row: Mapping[str, Any]) -> Optional[StoredSnapshot]:
    """The snapshot a store row's attempt ran (row["code"], row["run_dir"]); None when the attempt ran its live
    workdir (no code key) or when the snapshot's manifest is gone (removed by `danlu gc`)."""
    key = row["code"]
    if not key:
        return None
    layout = CodeLayout.of_run_dir(Path(row["run_dir"]))
    manifest = read_manifest(layout.root.parent, str(key))
    if manifest is None:
        return None
    commit = manifest.get("commit")
    dirty = manifest.get("dirty")
    changed = manifest.get("changed")
    return StoredSnapshot(
        key=str(key),
        layout=layout,
        workdir=str(manifest.get("workdir") or ""),
        commit=str(commit) if commit else None,
        dirty=None if dirty is None else bool(dirty),
        changed=tuple(str(p) for p in changed) if isinstance(changed, list) else (),
        prefix=str(manifest.get("prefix") or ""),
        entries=_entries(manifest.get("entries")),
    )


def facts(key: Optional[str], run_dir: str) -> Optional[Dict[str, Any]]:
    """What `danlu show --json` says of an attempt's code: {snapshot, commit, dirty, changed, tree}; None for the
    live workdir; a snapshot whose manifest is gone has its key alone (every other field null)."""
    if not key:
        return None
    snap = snapshot_of({"code": key, "run_dir": run_dir})
    if snap is None:
        return {"snapshot": key, "commit": None, "dirty": None, "changed": None, "tree": None}
    tree = str(snap.tree)
    return {"snapshot": key, "commit": snap.commit, "dirty": snap.dirty, "changed": list(snap.changed), "tree": tree}


def decoded(data: bytes) -> Optional[str]:
    """`data` as UTF-8 text; None for binary content (a NUL byte in its first 8 KB, or not UTF-8)."""
    if b"\0" in data[:BINARY_PROBE]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def file_text(layout: CodeLayout, entry: Entry) -> Optional[str]:
    """The text of a frozen entry: a file's bytes as UTF-8 (None for a binary file); for a symlink or a path left
    in the workdir, one line naming where it points. OSError when the object is not in the store."""
    if entry.kind == SYMLINK:
        return f"symbolic link to {entry.ref}"
    if entry.kind == LIVE:
        return f"not frozen: read from {entry.ref} as it is when the job runs"
    return decoded(layout.object(entry.ref, entry.kind == EXECUTABLE).read_bytes())


@dataclass(frozen=True)
class Side:
    """One side of a file's diff: its name in the headers, its kind (None: no such path) and its text (None:
    binary)."""

    name: str
    kind: Optional[str]
    text: Optional[str] = ""


@dataclass(frozen=True)
class FileDiff:
    path: str
    status: str  # "added", "removed" or "changed"
    lines: List[str]
    added: int = 0  # lines added and removed (--stat)
    removed: int = 0
    binary: bool = False


def _counts(body: Sequence[str]) -> Tuple[int, int]:
    """(lines added, lines removed) of a unified diff's hunks (its two header lines left out)."""
    added = sum(1 for line in body if line.startswith("+"))
    removed = sum(1 for line in body if line.startswith("-"))
    return added, removed


def file_diff(path: str, a: Side, b: Side) -> FileDiff:
    """The diff of one path: a mode line when only the executable bit changed, "Binary files ... differ" for
    binary content, else a unified diff (headers alone for an empty file added or removed)."""
    status = "added" if a.kind is None else "removed" if b.kind is None else "changed"
    lines: List[str] = []
    if a.kind in (FILE, EXECUTABLE) and b.kind in (FILE, EXECUTABLE) and a.kind != b.kind:
        lines.append(f"Mode of {path} changed: {MODES[a.kind]} -> {MODES[b.kind]}")
    if a.text is None or b.text is None:
        lines.append(f"Binary files {a.name} and {b.name} differ")
        return FileDiff(path, status, lines, binary=True)
    body = list(difflib.unified_diff(a.text.splitlines(), b.text.splitlines(), a.name, b.name, lineterm=""))
    if not body and status != "changed":
        body = [f"--- {a.name}", f"+++ {b.name}"]
    added, removed = _counts(body[2:])
    return FileDiff(path, status, lines + body, added, removed)


def _snapshot_side(snap: StoredSnapshot, path: str, name: str) -> Side:
    entry = snap.entries.get(path)
    if entry is None:
        return Side(DEV_NULL, None)
    return Side(name, entry.kind, file_text(snap.layout, entry))


def file_diffs(a: StoredSnapshot, b: StoredSnapshot) -> List[FileDiff]:
    """Every path whose entry differs between two snapshots (added, removed, changed content, mode or link
    target), sorted by path."""
    out: List[FileDiff] = []
    for path in sorted(set(a.entries) | set(b.entries)):
        ea, eb = a.entries.get(path), b.entries.get(path)
        if ea is not None and eb is not None and (ea.kind, ea.ref) == (eb.kind, eb.ref):
            continue
        try:
            sides = _snapshot_side(a, path, f"a/{path}"), _snapshot_side(b, path, f"b/{path}")
        except OSError as e:
            out.append(FileDiff(path, "changed", [f"Contents of {path} unreadable: {e}"]))
            continue
        out.append(file_diff(path, *sides))
    return out


def code_diff(a: StoredSnapshot, b: StoredSnapshot) -> List[str]:
    """The unified diff (a/<path> to b/<path>) of every path whose entry differs between two snapshots."""
    return [line for d in file_diffs(a, b) for line in d.lines]


def _git(workdir: str, args: Sequence[str]) -> "subprocess.CompletedProcess[bytes]":
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    return subprocess.run(
        ["git", "--no-optional-locks", "--literal-pathspecs", "-C", workdir, *args],
        capture_output=True,
        env=env,
        check=False,
    )


def _committed(snap: StoredSnapshot, commit: str) -> Optional[Dict[str, Tuple[str, str]]]:
    """path -> (git mode, object id) in `commit` of the snapshot's changed paths that it has; None when the
    commit is not in the repository of the workdir (or git cannot be asked)."""
    try:
        if _git(snap.workdir, ["cat-file", "-e", f"{commit}^{{commit}}"]).returncode != 0:
            return None
        listed = _git(
            snap.workdir, ["ls-tree", "-z", "--full-tree", commit, "--", *(snap.prefix + p for p in snap.changed)]
        )
    except OSError:  # no git on PATH, or the workdir is gone
        return None
    if listed.returncode != 0:
        return None
    out: Dict[str, Tuple[str, str]] = {}
    for record in listed.stdout.decode("utf-8", "surrogateescape").split("\0"):
        meta, tab, path = record.partition("\t")
        if tab and path.startswith(snap.prefix):
            mode, _, oid = meta.split(" ")
            out[path[len(snap.prefix) :]] = (mode, oid)
    return out


def _commit_side(snap: StoredSnapshot, commit: str, path: str, found: Optional[Tuple[str, str]]) -> Side:
    """The committed side of a changed path (`git show <commit>:<prefix><path>`), or /dev/null."""
    if found is None:
        return Side(DEV_NULL, None)
    mode = found[0]
    shown = _git(snap.workdir, ["show", f"{commit}:{snap.prefix}{path}"])
    if shown.returncode != 0:
        return Side(DEV_NULL, None)
    kind = GIT_KINDS.get(mode, FILE)
    if kind == SYMLINK:
        return Side(f"a/{path}", kind, f"symbolic link to {shown.stdout.decode('utf-8', 'surrogateescape')}")
    return Side(f"a/{path}", kind, decoded(shown.stdout))


def uncommitted_diff(snap: StoredSnapshot) -> List[str]:
    """The diff from the snapshot's commit (a/) to its frozen files (b/) of the paths that differed from it; [] for
    a snapshot outside git or of a clean workdir; one line instead when the commit is no longer in the repository."""
    commit = snap.commit
    if commit is None or not snap.changed:
        return []
    committed = _committed(snap, commit)
    if committed is None:
        return [
            f"commit {commit[:10]} is not in the repository at {snap.workdir} (any longer): no diff; the frozen "
            f"files are in {snap.tree}"
        ]
    lines: List[str] = []
    for path in sorted(snap.changed):
        found = committed.get(path)
        if found is not None and found[0] == SUBMODULE_MODE:
            lines.append(f"Submodule {path} differs from its commit {found[1][:10]}; its frozen files: {snap.tree}")
            continue
        try:
            frozen = _snapshot_side(snap, path, f"b/{path}")
        except OSError as e:
            lines.append(f"Contents of {path} unreadable: {e}")
            continue
        lines.extend(file_diff(path, _commit_side(snap, commit, path, found), frozen).lines)
    return lines
