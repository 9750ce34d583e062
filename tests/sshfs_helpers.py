"""Two sshfs mounts of one directory: the test stand-in for a home that two login nodes share over NFS.

Each mount is a client of its own (its own caches, and POSIX/BSD locks that never reach the other mount), talking
to one sshd on loopback. A process in a UTS namespace of its own (`as_host`) has another host name, as a process
on the second login node would. tests/run.sh installs openssh-server and sshfs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, List, Sequence

import pytest

# Names are looked up on the server, not in sshfs's own 20 s directory cache or the kernel's 1 s one: an NFS client
# revalidates a name on every exclusive create (the lock directory's mkdir) and a file's data on every open
# (close-to-open), which sshfs does too once these caches are off (its page cache is dropped on open by default).
NFS_LIKE = "dir_cache=no,entry_timeout=0,attr_timeout=0,negative_timeout=0"


@dataclass
class SharedDir:
    root: Path
    export: Path
    mounts: List[Path] = field(default_factory=list)
    sshd: "subprocess.Popen[bytes] | None" = None

    def stop(self) -> None:
        for m in self.mounts:
            subprocess.run(["fusermount3", "-u", "-z", str(m)], capture_output=True)
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        if self.sshd is not None:
            self.sshd.terminate()
            self.sshd.wait(10)


def missing_tools() -> List[str]:
    need = {
        "sshd": "/usr/sbin/sshd",
        "sshfs": shutil.which("sshfs"),
        "unshare": shutil.which("unshare"),
        "fusermount3": shutil.which("fusermount3"),
    }
    gone = [name for name, where in need.items() if not where or not Path(where).exists()]
    if not Path("/dev/fuse").exists():
        gone.append("/dev/fuse")
    return gone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(root: Path, clients: int = 2) -> SharedDir:
    root.mkdir(parents=True, exist_ok=True)
    keys = root / "keys"
    keys.mkdir(mode=0o700)
    for name in ("client", "host"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {keys / 'host'}",
                f"AuthorizedKeysFile {keys / 'client.pub'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "UsePAM no",
                f"PidFile {root / 'sshd.pid'}",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    shared = SharedDir(root=root, export=root / "export")
    shared.export.mkdir()
    shared.sshd = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "sshd.log", "wb"),
    )
    deadline = time.time() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or shared.sshd.poll() is not None:
                shared.stop()
                raise RuntimeError(f"sshd did not start: {(root / 'sshd.log').read_text()[-500:]}") from None
            time.sleep(0.1)
    for k in range(clients):
        mount = root / f"client{k + 1}"
        mount.mkdir()
        done = subprocess.run(
            [
                "sshfs",
                "-p",
                str(port),
                "-o",
                f"IdentityFile={keys / 'client'},StrictHostKeyChecking=no,"
                "UserKnownHostsFile=/dev/null,LogLevel=ERROR," + NFS_LIKE,
                f"{os.environ.get('USER') or 'root'}@127.0.0.1:{shared.export}",
                str(mount),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            shared.stop()
            raise RuntimeError(f"sshfs mount failed: {done.stderr.strip()}")
        shared.mounts.append(mount)
    return shared


def mounted(tmp_path_factory: Any) -> Iterator[SharedDir]:
    """A pytest fixture's body: two mounts of one folder, for the module; fails in CI when they cannot be made."""
    gone = missing_tools()
    if gone or os.geteuid() != 0:
        why = f"needs root and {', '.join(gone)} (tests/run.sh installs openssh-server and sshfs)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    mounts = start(tmp_path_factory.mktemp("shared-home"))
    yield mounts
    mounts.stop()


def as_host(name: str, argv: Sequence[str]) -> List[str]:
    """argv run with the host name `name` (a UTS namespace of its own; needs root)."""
    return ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', name, *argv]
