"""A submit (and a rerun) refuses to write into folders another user can write: real Unix users, danlu run as one.

User A submits; user B is another member of A's lab group who plants a sweep folder A would use. Refused submits
write nothing, with or without --dry-run; a private or sticky shared runs_dir still runs, in folders of mode 700.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List

import pytest
from danlu_helpers import REPO

TINY = ["experiment=tiny_ibq", "cluster=local", "launch=python", "args.max_train_steps=3"]


def _run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


@dataclass
class Users:
    a: str
    b: str
    group: str
    base: Path  # root's, mode 755: the shared folders of each test go here
    venv: Path  # a Python both users can run, with this checkout's packages

    def home(self, user: str) -> Path:
        return Path(pwd.getpwnam(user).pw_dir)

    def env(self, user: str, runs_dir: Path) -> List[str]:
        home = self.home(user)
        return [
            f"HOME={home}",
            f"PATH={self.venv / 'bin'}:/usr/bin:/bin",
            f"DANLU_HOME={home / 'danlu-home'}",
            f"DANLU_STORE={home / 'danlu-home' / 'store.sqlite'}",
            f"DANLU_RUNS_DIR={runs_dir}",
            "NO_COLOR=1",
        ]

    def danlu(self, user: str, runs_dir: Path, *args: str, umask: str = "022") -> subprocess.CompletedProcess:
        """`danlu ARGS` run as `user` (a fresh login-less process with only the environment above)."""
        python = str(self.venv / "bin" / "python")
        shell = ["sh", "-c", f'umask {umask} && exec "$@"', "sh", python, "-m", "launcher.cli", *args]
        return subprocess.run(
            ["runuser", "-u", user, "--", "env", "-i", *self.env(user, runs_dir), *shell],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=str(REPO),
        )

    def store(self, user: str) -> Path:
        return self.home(user) / "danlu-home" / "store.sqlite"


OPEN_STORE = (
    "import sqlite3, sys; sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True).execute('select 1').fetchall()"
)


def _unavailable(msg: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"TEST USERS UNAVAILABLE: {msg}", pytrace=False)
    pytest.skip(f"TEST USERS UNAVAILABLE: {msg}")


def _shared_python(base: Path, user: str) -> Path:
    """A venv-shaped folder whose python another user can run: this venv's packages on an interpreter they can read
    (this venv's own base interpreter may sit in a folder only root can enter)."""
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(sys.executable).resolve(), Path(f"/usr/bin/python{version}")]
    for k, interpreter in enumerate(candidates):
        venv = base / f"venv{k}"
        lib = venv / "lib" / site.parent.name
        (venv / "bin").mkdir(parents=True)
        lib.mkdir(parents=True)
        (venv / "bin" / "python").symlink_to(interpreter)
        (lib / "site-packages").symlink_to(site)
        (venv / "pyvenv.cfg").write_text(
            f"home = {interpreter.parent}\ninclude-system-site-packages = false\n"
            f"version = {'.'.join(map(str, sys.version_info[:3]))}\n"
        )
        for d in (venv, venv / "bin", venv / "lib", lib):
            d.chmod(0o755)
        (venv / "pyvenv.cfg").chmod(0o644)
        probe = _run("runuser", "-u", user, "--", str(venv / "bin" / "python"), "-c", "import launcher.cli, submitit")
        if probe.returncode == 0:
            return venv
    _unavailable(f"no Python that {user} can run with this checkout's packages")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def users() -> Iterator[Users]:
    """Two real users, A and B, in one lab group of their own; removed (with their homes) afterwards."""
    if os.geteuid() != 0 or not all(shutil.which(c) for c in ("useradd", "userdel", "groupadd", "runuser")):
        _unavailable("these tests run as root, with useradd, userdel, groupadd and runuser")
    tag = secrets.token_hex(3)
    group, a, b = f"danlu-tg{tag}", f"danlu-ta{tag}", f"danlu-tb{tag}"
    made: List[str] = []
    base = Path(tempfile.mkdtemp(prefix="danlu-owner-", dir="/tmp"))
    base.chmod(0o755)
    try:
        done = _run("groupadd", group)
        if done.returncode != 0:
            _unavailable(f"groupadd {group}: {done.stderr.strip()}")
        for user in (a, b):
            done = _run("useradd", "-m", "-G", group, user)
            if done.returncode != 0:
                _unavailable(f"useradd {user}: {done.stderr.strip()}")
            made.append(user)
            os.chmod(pwd.getpwnam(user).pw_dir, 0o700)
        yield Users(a=a, b=b, group=group, base=base, venv=_shared_python(base, a))
    finally:
        for user in made:
            _run("userdel", "-r", user)
        _run("groupdel", group)
        shutil.rmtree(base, ignore_errors=True)


def _folder(users: Users, name: str, mode: int, owner: str = "root", group: str = "root") -> Path:
    path = users.base / name
    path.mkdir()
    shutil.chown(path, owner, group)
    path.chmod(mode)
    return path


def _listing(path: Path) -> List[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _refused(done: subprocess.CompletedProcess, *words: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[lines.index(errors[0]) + 1].startswith("hint: "), done.stderr
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def test_a_sweep_folder_another_user_made_in_a_group_folder_is_refused(users: Users) -> None:
    """B makes (mode 777) the sweep folder A's --name will use in a group-writable folder without the sticky bit:
    A's submit refuses it, with and without --dry-run, and writes nothing; so does a name nobody planted."""
    shared = _folder(users, "lab-shared", 0o2770, group=users.group)
    planted = shared / "s1"
    assert _run("runuser", "-u", users.b, "--", "mkdir", "-m", "777", str(planted)).returncode == 0
    before = _listing(shared)
    for extra in (["--dry-run"], []):
        done = users.danlu(users.a, shared, "submit", *TINY, "--name", "s1", *extra)
        _refused(done, str(planted), f"belongs to {users.b}")
        assert _listing(shared) == before and not users.store(users.a).exists()
    done = users.danlu(users.a, shared, "submit", *TINY, "--name", "s1b", "--dry-run")
    _refused(done, f"cluster.runs_dir {shared}", "writable by its group", "without the sticky bit")
    assert _listing(shared) == before


def test_a_runs_dir_others_can_write_is_refused_even_with_no_planted_folder(users: Users) -> None:
    """A world-writable runs_dir without the sticky bit, or a folder above runs_dir that others can write (they
    could rename runs_dir away), is refused before anything is written."""
    open_dir = _folder(users, "open", 0o777)
    for extra in (["--dry-run"], []):
        done = users.danlu(users.a, open_dir, "submit", *TINY, "--name", "s2", *extra)
        _refused(done, f"cluster.runs_dir {open_dir}", "writable by its group and others (mode 777)")
        assert list(open_dir.iterdir()) == [] and not users.store(users.a).exists()
    parent = _folder(users, "open-parent", 0o777)
    mine = parent / "mine"
    mine.mkdir(mode=0o700)
    shutil.chown(mine, users.a, users.a)
    for extra in (["--dry-run"], []):
        done = users.danlu(users.a, mine, "submit", *TINY, "--name", "s2", *extra)
        _refused(done, f"{parent}, a folder above cluster.runs_dir", "without the sticky bit")
        assert list(mine.iterdir()) == []


def _assert_private(path: Path, user: str) -> None:
    st = path.lstat()
    assert stat.S_ISDIR(st.st_mode) and pwd.getpwuid(st.st_uid).pw_name == user, path
    assert stat.S_IMODE(st.st_mode) == 0o700, f"{path}: mode {stat.S_IMODE(st.st_mode):o}"


def test_a_sticky_shared_runs_dir_with_own_sweep_folders_runs_in_private_folders(users: Users) -> None:
    """A world-writable runs_dir with the sticky bit (like /tmp) is fine when the sweep folder is A's own: the run
    completes, and every folder A's submit makes is mode 700 although A's umask is 002."""
    sticky = _folder(users, "sticky", 0o1777)
    assert _run("runuser", "-u", users.a, "--", "mkdir", "-m", "700", str(sticky / "s3")).returncode == 0
    done = users.danlu(users.a, sticky, "submit", *TINY, "--name", "s3", "--dry-run", umask="002")
    assert done.returncode == 0, done.stderr
    done = users.danlu(users.a, sticky, "submit", *TINY, "--name", "s3", "--wait", umask="002")
    assert done.returncode == 0, done.stdout + done.stderr
    for sub in ("", "scripts", ".submitit", ".slurm", "0"):
        _assert_private(sticky / "s3" / sub, users.a)


def test_a_private_runs_dir_runs_and_a_rerun_checks_it_too(users: Users) -> None:
    """A's own runs_dir, made by danlu under umask 002, is mode 700 and the run completes; a rerun of it is refused
    while runs_dir is group-writable, and planned again once it is not."""
    runs_dir = users.home(users.a) / "danlu-runs"
    done = users.danlu(users.a, runs_dir, "submit", *TINY, "--name", "s4", "--wait", umask="002")
    assert done.returncode == 0, done.stdout + done.stderr
    for path in (runs_dir, runs_dir / "s4", runs_dir / "s4" / "scripts"):
        _assert_private(path, users.a)
    rerun = ["rerun", "s4", "--continue", "args.max_train_steps=4", "--dry-run"]
    runs_dir.chmod(0o770)
    _refused(users.danlu(users.a, runs_dir, *rerun), f"cluster.runs_dir {runs_dir}", "writable by its group")
    runs_dir.chmod(0o700)
    done = users.danlu(users.a, runs_dir, *rerun)
    assert done.returncode == 0, done.stderr


def test_a_sweep_folder_made_by_another_user_after_the_checks_is_refused_when_danlu_makes_it(users: Users) -> None:
    """The folder a submit makes (a made-up sweep name is only known then) may have been made by someone else since
    the checks: making it refuses a folder that is not the submitter's, and makes a new one mode 700 under umask 002."""
    sticky = _folder(users, "sticky-race", 0o1777)
    assert _run("runuser", "-u", users.b, "--", "mkdir", "-m", "777", str(sticky / "taken")).returncode == 0
    make = "import sys; from pathlib import Path; from launcher.submit.ownership import make_own_folder as m; "
    make += "m(Path(sys.argv[1])); print('made')"
    shell = ["sh", "-c", 'umask 002 && exec "$@"', "sh", str(users.venv / "bin" / "python"), "-c", make]
    for name, made in (("taken", False), ("fresh", True)):
        done = subprocess.run(
            ["runuser", "-u", users.a, "--", *shell, str(sticky / name)], capture_output=True, text=True, cwd=str(REPO)
        )
        assert (done.stdout.strip() == "made") == made, done.stderr
        if not made:
            assert f"{sticky / name} belongs to {users.b}" in done.stderr, done.stderr
    _assert_private(sticky / "fresh", users.a)
    assert list((sticky / "taken").iterdir()) == []


def test_another_user_reads_none_of_a_store_webhook_or_run_folders(users: Users) -> None:
    """The worst common case: A's home is readable by all (0755, as NFS homes often are) and A's umask is 002. A keeps
    a webhook file and runs a sweep; B, in A's lab group, tries to read A's store (by hand and through danlu), A's
    webhook URL and A's run folders and logs, by exact path: every attempt is refused."""
    home = users.home(users.a)
    home.chmod(0o755)
    try:
        hook = home / ".config" / "danlu" / "webhook"
        make = f"mkdir -p {hook.parent} && printf 'https://hooks.example/secret-42' > {hook} && chmod 600 {hook}"
        assert _run("runuser", "-u", users.a, "--", "sh", "-c", f"umask 002 && {make}").returncode == 0
        runs_dir = home / "danlu-runs"
        done = users.danlu(users.a, runs_dir, "submit", *TINY, "--name", "s6", "--wait", umask="002")
        assert done.returncode == 0, done.stdout + done.stderr
        store = users.store(users.a)
        run_dir = runs_dir / "s6" / "0"
        logs = sorted(p for p in run_dir.rglob("*") if p.is_file())
        assert logs, "the run left no files to try"
        attempts = {
            "read the store": ["cat", str(store)],
            "open the store": [str(users.venv / "bin" / "python"), "-c", OPEN_STORE, str(store)],
            "list the store's folder": ["ls", str(store.parent)],
            "read the webhook": ["cat", str(hook)],
            "list the runs": ["ls", str(runs_dir)],
            "list a run": ["ls", str(run_dir)],
            "read a log": ["cat", str(logs[0])],
        }
        for what, cmd in attempts.items():
            tried = _run("runuser", "-u", users.b, "--", *cmd)
            assert tried.returncode != 0, f"B could {what}: {tried.stdout[:200]}"
            assert "ermission denied" in tried.stderr or "unable to open" in tried.stderr, (what, tried.stderr)
        through_danlu = users.danlu(users.b, users.home(users.b) / "runs", "status", "--all")
        assert "s6" not in through_danlu.stdout  # B's danlu has B's own store
        env_b = users.env(users.b, users.home(users.b) / "runs")
        env_b = [e for e in env_b if not e.startswith("DANLU_STORE=")] + [f"DANLU_STORE={store}"]
        python = str(users.venv / "bin" / "python")
        pointed = subprocess.run(
            ["runuser", "-u", users.b, "--", "env", "-i", *env_b, python, "-m", "launcher.cli", "status", "--all"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=str(REPO),
        )
        assert pointed.returncode != 0 and "s6" not in pointed.stdout, pointed.stdout + pointed.stderr
        assert "secret-42" not in pointed.stdout + pointed.stderr
        for path in (store.parent, runs_dir, runs_dir / "s6"):
            _assert_private(path, users.a)
        assert stat.S_IMODE(store.stat().st_mode) == 0o600
    finally:
        home.chmod(0o700)
