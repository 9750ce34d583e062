"""The lock directory that guards a store on a network file system (launcher/dir_lock.py), on a real file system
with real processes: a stale lock is broken by one waiter only, a holder never removes another's lock, and the
holders' audit log (DANLU_LOCK_AUDIT) shows two holders at once when the lock is broken on purpose."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from lock_audit import double_holders, read_audit

from launcher.network_fs import host

REPO = Path(__file__).resolve().parents[1]

# A process that takes the lock, checks that no one else is inside (an exclusive mkdir), stays `hold` seconds and
# gives it back. With a `slow` delay, its first rename of the lock directory itself waits that long first: a
# waiter descheduled between judging the lock stale and moving it away.
WAITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from launcher.dir_lock import DirLock

    lock_path, hold, slow = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    real_rename = os.rename
    def rename(src, dst, *a, **k):
        global slow
        if slow and os.fspath(src) == os.fspath(lock_path):
            time.sleep(slow)
            slow = 0.0
        return real_rename(src, dst, *a, **k)
    os.rename = rename
    lock = DirLock(lock_path, patience_s=30, stale_s=30)
    print("waiting", flush=True)
    lock.acquire()
    inside = lock_path.with_name("inside")
    try:
        os.mkdir(inside)
    except FileExistsError:
        print("DOUBLE", flush=True)
        lock.release()
        sys.exit(3)
    time.sleep(hold)
    os.rmdir(inside)
    lock.release()
    print("done", lock.broken, flush=True)
""")


def _env(**extra: str) -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), **extra)


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _stale_lock(path: Path) -> None:
    """A lock whose owner died on this host (the format of any danlu: `<host> <pid>` first)."""
    path.mkdir()
    (path / "owner").write_text(f"{host()} {_dead_pid()} 0123456789abcdef\n")


def _waiter(lock: Path, hold: float, slow: float, **env: str) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-c", WAITER, str(lock), str(hold), str(slow)],
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "waiting"
    return p


def test_a_stale_lock_is_broken_by_one_waiter_only(tmp_path):
    """Two waiters judge the same dead owner's lock stale; the first is slowed between judging and moving the lock
    away, the second breaks it and holds it. The slow one must not take the live lock from it."""
    lock = tmp_path / "store.sqlite.lock"
    _stale_lock(lock)
    slow = _waiter(lock, hold=0.3, slow=0.8)
    time.sleep(0.2)  # the slow waiter has read the dead owner and sleeps before its rename
    fast = _waiter(lock, hold=1.5, slow=0.0)
    outs = [p.communicate(timeout=60) for p in (slow, fast)]
    assert [p.returncode for p in (slow, fast)] == [0, 0], outs
    assert all("DOUBLE" not in out for out, _ in outs), outs
    assert sum(int(out.split()[-1]) for out, _ in outs) == 1, outs  # one break in all
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_many_waiters_on_a_stale_lock_take_it_one_at_a_time(tmp_path):
    lock = tmp_path / "store.sqlite.lock"
    _stale_lock(lock)
    audit = tmp_path.parent / f"{tmp_path.name}.audit"
    procs = [_waiter(lock, hold=0.05, slow=0.3 * (k % 2), DANLU_LOCK_AUDIT=str(audit)) for k in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, outs
    events = read_audit(audit)
    assert sum(e.event == "acquire" and e.lock == lock.name for e in events) == 6
    assert double_holders(events) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_holder_whose_lock_was_taken_over_leaves_the_new_holders_lock_alone(tmp_path):
    """A holder suspended past stale_s has its lock broken by a waiter of another host; when it resumes, its
    release must not remove the new holder's lock, and it can tell that it lost the lock."""
    from launcher.dir_lock import DirLock

    path = tmp_path / "store.sqlite.lock"
    first = DirLock(path, patience_s=5, stale_s=0.5)
    first.acquire()
    assert first.held()
    os.utime(path, (time.time() - 10, time.time() - 10))  # older than stale_s: judged stale though alive
    second = DirLock(path, patience_s=5, stale_s=0.5)
    second.acquire()
    assert second.broken == 1 and second.held()
    first.release()
    assert second.held(), "the first holder's release removed the second holder's lock"
    second.release()
    assert not path.exists()


def test_the_audit_sees_two_holders_when_the_lock_is_broken_on_purpose(tmp_path):
    """The instrumentation the torture test relies on: remove a held lock by hand, let another process take it,
    and the audit must report the overlap."""
    lock = tmp_path / "store.sqlite.lock"
    audit = tmp_path.parent / f"{tmp_path.name}.audit"
    holder = _waiter(lock, hold=2.0, slow=0.0, DANLU_LOCK_AUDIT=str(audit))
    deadline = time.monotonic() + 10
    while not (tmp_path / "inside").exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    subprocess.run(["rm", "-rf", str(lock)], check=True)  # breaking it by hand while it is held
    (tmp_path / "inside").rmdir()  # the second holder's own inside check would fail otherwise
    second = _waiter(lock, hold=0.1, slow=0.0, DANLU_LOCK_AUDIT=str(audit))
    assert second.communicate(timeout=30)[0].startswith("done")
    holder.communicate(timeout=30)
    overlaps = double_holders(read_audit(audit))
    assert len(overlaps) == 1, overlaps
