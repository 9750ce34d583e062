"""One run store shared by two login nodes over a network file system (issue 15).

The stand-in: two sshfs mounts of one directory (tests/sshfs_helpers.py), each its own client, with writers on
each given another host name (a UTS namespace of their own). Neither WAL's shared memory nor POSIX locks reach
across the two mounts; the store's network mode (lock directory, rollback journal, a connection per use) must.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from danlu_helpers import danlu
from sshfs_helpers import as_host, mounted

from launcher.dir_lock import DirLock
from launcher.network_fs import mount_of, parse_mountinfo, store_mode
from launcher.store import Store, recorded_mode

REPO = Path(__file__).resolve().parents[1]
CAPTURED = Path(__file__).parent / "captured"
SWEEPS = 8  # per writer; each sweep is 4 uses of the store (3 transactions, 1 read), each under the lock

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from launcher.store import NewRun, Store

    path, who, sweeps = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    store = Store(path)
    print(store.mode, flush=True)
    for j in range(sweeps):
        name = f"{who}-{j}"
        runs = [NewRun(run=f"{name}/{i}", idx=i, overrides=[], config={"i": i}, run_dir=f"/r/{name}/{i}", workdir="/r",
                       git_commit=None, git_dirty=None, partition="p", nodes=1, cluster_kind="slurm", script="",
                       command="", tag=f"{name}:0", array_task=i) for i in range(3)]
        assert store.create_sweep(name, "e", "c", [], [], f"/r/{name}", runs)
        store.record_job(f"{name}:0", str(j + 1), array=True)
        store.update_attempts([{"run": f"{name}/1", "attempt": 1, "state": "RUNNING", "final": False}])
        assert len([r for r in store.latest() if r["sweep"] == name]) == 3  # reads interleave with the other host
""")

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from launcher.store import Store

    store = Store(Path(sys.argv[1]))
    with store.tx():
        print("holding", flush=True)
        time.sleep(600)
""")


shared = pytest.fixture(scope="module", name="shared")(mounted)


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("DANLU_STORE_FS", None)  # detected from the mount table, as on a login node
    return env


def test_the_mount_table_tells_network_file_systems_from_local_ones():
    """Lines captured from this machine's /proc/self/mountinfo with the two sshfs mounts up."""
    text = (CAPTURED / "mountinfo.txt").read_text()
    mounts = parse_mountinfo(text)
    assert ("/", "ext4") in mounts and ("/dev/shm", "tmpfs") in mounts
    sshfs = [point for point, fstype in mounts if fstype == "fuse.sshfs"]
    assert sshfs == ["/tmp/sshfs-test/m1", "/tmp/sshfs-test/m2"]
    assert mount_of("/tmp/sshfs-test/m1/store/store.sqlite", text) == ("fuse.sshfs", "/tmp/sshfs-test/m1")
    assert mount_of("/tmp/sshfs-test/m10", text)[0] != "fuse.sshfs"  # a prefix is not a parent
    assert mount_of("/tmp/elsewhere", text)[0] != "fuse.sshfs"
    # a mount point with a space, escaped as octal
    assert parse_mountinfo("36 35 98:0 / /mnt/my\\040home rw - nfs4 srv:/home rw")[0] == ("/mnt/my home", "nfs4")


def test_a_store_on_the_shared_mount_uses_the_network_mode(shared, monkeypatch):
    monkeypatch.delenv("DANLU_STORE_FS", raising=False)
    mode, why = store_mode(shared.mounts[0] / "s.sqlite")
    assert (mode, why.split()[0]) == ("network", "fuse.sshfs")
    assert store_mode(Path("/tmp/s.sqlite"))[0] == "local"
    monkeypatch.setenv("DANLU_STORE_FS", "local")  # the override, e.g. on the file server itself
    assert store_mode(shared.mounts[0] / "s.sqlite") == ("local", "DANLU_STORE_FS=local")


def test_two_hosts_writing_one_store_lose_nothing(shared):
    """Four writers, two per host, each host through its own mount: 4 x 8 sweeps of 3 runs, all there, read
    alike through either mount, the database intact, no lock left behind."""
    home = shared.mounts[0] / "two-hosts"
    home.mkdir()
    login1, login2 = (mount / "two-hosts" / "store.sqlite" for mount in shared.mounts)
    hosts = [("login1", login1), ("login2", login2)]
    assert _writers(hosts * 2) == ["network"] * 4
    seen = []
    for mount in shared.mounts:
        store = Store(mount / "two-hosts" / "store.sqlite")
        rows = store.latest()
        assert len(rows) == 4 * SWEEPS * 3 and len({r["run"] for r in rows}) == len(rows)
        assert sum(r["state"] == "RUNNING" for r in rows) == 4 * SWEEPS
        assert store.query("PRAGMA integrity_check")[0][0] == "ok"
        assert store.query("PRAGMA journal_mode")[0][0] == "delete"
        seen.append(sorted(r["run"] for r in rows))
        store.close()  # this process's own handles through the mount: none may keep a deleted journal open
    assert seen[0] == seen[1]
    # A journal deleted by its writer right after closing it can be unlinked before the kernel's asynchronous
    # release of it reached sshfs: sshfs then keeps it as .fuse_hidden* until that release arrives (NFS's
    # .nfs* files alike). They go by themselves; a lock or journal left behind stays and fails here.
    # Seen once in CI: one stayed past a minute with no process holding it. What must hold is that no process
    # of this machine keeps a file of the store open through either mount, and that nothing but deleted files
    # (.fuse_hidden*) is left beside the database.
    deadline = time.monotonic() + 60
    while (
        any(p.name.startswith(".fuse_hidden") for p in (shared.export / "two-hosts").iterdir())
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert _open_under([m / "two-hosts" for m in shared.mounts]) == []
    left = sorted(p.name for p in (shared.export / "two-hosts").iterdir() if not p.name.startswith(".fuse_hidden"))
    assert left == ["store.sqlite"]


def _open_under(dirs: list[Path]) -> list[str]:
    """Open files under any of dirs, as 'pid: path', from every process's /proc/PID/fd."""
    prefixes = tuple(str(d) + "/" for d in dirs)
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:  # the process ended, or is not ours to read
            continue
        found += [f"{fd_dir.parent.name}: {link}" for link in links if link.startswith(prefixes)]
    return found


def test_a_lock_left_by_a_killed_process_is_broken(shared):
    """A danlu SIGKILLed inside a transaction leaves the lock directory: on its own host the next process breaks
    it at once (the owner's pid is gone); another host waits until it is stale by the file server's clock."""
    path = shared.mounts[0] / "killed" / "store.sqlite"
    path.parent.mkdir()
    Store(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], env=_env(), stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    lock = path.with_name("store.sqlite.lock")
    assert lock.is_dir()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    store = Store(path)  # this host: the owner is a dead pid here
    started = time.monotonic()
    assert store.sweep("none") is None
    assert time.monotonic() - started < 5 and store.lock is not None and store.lock.broken == 1
    # another host's lock is not this host's to judge by pid: it is broken once stale_s old
    other = DirLock(shared.mounts[1] / "killed" / "store.sqlite.lock", patience_s=30, stale_s=3)
    lock.mkdir()
    (lock / "owner").write_text("login2 1\n")
    started = time.monotonic()
    other.acquire()
    waited = time.monotonic() - started
    other.release()
    assert other.broken == 1 and waited >= 2, waited
    assert not lock.exists()


def test_a_submit_on_the_other_host_is_alive_to_crash_recovery(shared):
    """Crash recovery (submit/recovery.py) must not take a submit that runs on the other login node for a dead
    one (and drop its SUBMITTING rows): its flock does not cross the mounts, its heartbeat does."""
    from launcher.submit import recovery

    path = shared.mounts[0] / "tokens" / "store.sqlite"
    path.parent.mkdir()
    hold = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from launcher.store import Store
        from launcher.submit.recovery import token_lock

        with token_lock(Store(Path(sys.argv[1])), "tok"):
            print("holding", flush=True)
            time.sleep(600)
    """)
    holder = subprocess.Popen(
        as_host("login2", [sys.executable, "-c", hold, str(path)]), env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        here = Store(shared.mounts[1] / "tokens" / "store.sqlite")
        assert recovery._owner_alive(here, "tok")  # login2's submit, seen from this host through the other mount
        lock = recovery._lock_path(here, "tok")
        assert lock.read_text().split()[0] == "login2"
        old = time.time() - recovery.STALE_S - 60
        os.utime(lock, (old, old))  # a submit of the other host that stopped beating long ago is dead
        assert not recovery._owner_alive(here, "tok") and not lock.exists()
    finally:
        holder.kill()
        holder.wait()


def _writers(paths_by_host: list[tuple[str, Path]], sweeps: int = SWEEPS) -> list[str]:
    """Run WRITER once per (host, store path) at the same time; the mode each opened the store in."""
    procs = [
        subprocess.Popen(
            as_host(host, [sys.executable, "-c", WRITER, str(path), f"{host}-{k}", str(sweeps)]),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k, (host, path) in enumerate(paths_by_host)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), "\n".join(err[-1500:] for _, err in outs)
    return [out.strip() for out, _ in outs]


def test_the_file_server_opens_a_network_store_in_network_mode(shared):
    """The host that serves the folder sees its own disk (local), its clients see sshfs (network): both must use
    the store as it was made, or one WAL writer and one lock-directory writer corrupt it together."""
    (shared.mounts[0] / "server").mkdir()
    Store(shared.mounts[0] / "server" / "store.sqlite").close()  # made by a login node, through the mount
    on_disk = shared.export / "server" / "store.sqlite"
    assert recorded_mode(on_disk) == "network"
    modes = _writers([("fileserver", on_disk), ("login1", shared.mounts[0] / "server" / "store.sqlite")])
    assert modes == ["network", "network"]
    assert recorded_mode(on_disk) == "network"
    store = Store(on_disk)
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"
    assert len(store.latest()) == 2 * SWEEPS * 3
    store.close()


def test_a_local_mode_store_is_refused_through_a_network_mount_until_converted(shared):
    """A store made on the file server's disk (WAL) is refused, untouched, where it is reached through the
    network; DANLU_STORE_FS=network converts it once, and from then on the file server follows."""
    (shared.export / "made-local").mkdir()
    on_disk = shared.export / "made-local" / "store.sqlite"
    Store(on_disk).close()
    assert recorded_mode(on_disk) == "local"
    before = on_disk.read_bytes()
    through = shared.mounts[1] / "made-local" / "store.sqlite"
    env = {"DANLU_STORE": str(through), "DANLU_STORE_FS": ""}
    refused = danlu("status", env=env)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert lines[0].startswith("error: the run store") and "local mode" in lines[0] and "fuse.sshfs" in lines[0]
    assert lines[-1].startswith("hint:") and "DANLU_STORE_FS=network" in lines[-1]
    assert on_disk.read_bytes() == before and recorded_mode(on_disk) == "local"
    converted = danlu("status", env={**env, "DANLU_STORE_FS": "network"})
    assert converted.returncode == 0, converted.stderr
    assert recorded_mode(on_disk) == "network"
    assert danlu("status", env=env).returncode == 0
    server = Store(on_disk)
    assert server.mode == "network" and "made in network mode" in server.mode_why
    server.close()
