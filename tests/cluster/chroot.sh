#!/usr/bin/env bash
# A test cluster of a newer Slurm beside the host's 22.05 one: 24.11 (Debian trixie) or 26.05 (Debian sid).
#
#   bash tests/cluster/chroot.sh up|down|status VERSION      (up.sh VERSION / down.sh VERSION call this)
#   bash tests/cluster/chroot.sh run VERSION CMD [ARGS...]   run CMD inside that cluster's root and network
#
# The cluster is the same as up.sh's (same partitions, nodes, fake GPUs, accounting, preemption), started by the
# same up.sh, inside a root file system built from Debian's packages (mmdebstrap) and a network namespace of its
# own (so the same ports never clash with the host's cluster). Bound into that root at the same paths: /proc,
# /sys, /dev, /tmp (the tests' run directories), this repository and the Python its .venv was made from, so that
# jobs there run danlu's job side and the example workloads with the host's Python 3.11 and torch (the newer
# Debians ship Python 3.13/3.14, for which there is no local torch wheel).
# Client commands: $BASE/bin/{sbatch,squeue,sacct,...} run the cluster's own inside its root and namespace; put
# that directory first in PATH (the tests do, with DANLU_TEST_SLURM=VERSION) and danlu talks to that cluster.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
action=${1:?usage: chroot.sh up|down|status|run VERSION}
version=${2:?usage: chroot.sh up|down|status|run VERSION}
shift 2

case $version in
24.11) suite=trixie ;;
26.05) suite=sid ;;
*)
    echo "[testcluster $version] unknown version (24.11 or 26.05; 22.05 is the host's: up.sh)" >&2
    exit 2
    ;;
esac
BASE=/var/tmp/danlu-slurm-$version
ROOT=$BASE/root
BIN=$BASE/bin
NS=danlu-slurm-${version//./-}
major=${version%%.*}
minor=$((10#${version#*.}))
ADDR=10.254.$major.$minor  # Slurm >= 23 will not bind in a namespace with loopback addresses only
CLIENTS=(sbatch squeue sacct scontrol sinfo scancel sacctmgr srun salloc sstat sprio sshare sdiag)
say() { echo "[testcluster $version] $*"; }

python_base() {
    local py=$REPO/.venv/bin/python
    [[ -x $py ]] || py=$(command -v python3)
    "$py" -c 'import sys; print(sys.base_prefix)'
}

build_root() {
    [[ -x $ROOT/usr/sbin/slurmctld ]] && return 0
    mkdir -p "$BASE"
    if ! command -v mmdebstrap >/dev/null 2>&1; then
        say "installing mmdebstrap (apt)"
        { apt-get install -y -q mmdebstrap || { apt-get update -q && apt-get install -y -q mmdebstrap; }; } \
            >"$BASE/apt.log" 2>&1 || { tail -20 "$BASE/apt.log" >&2; exit 1; }
    fi
    local opts=(--variant=apt --include=slurm-wlm,slurmdbd,munge,mariadb-server,mariadb-client,procps,util-linux,libffi8)  # libffi: the host Python's ctypes
    [[ $suite == sid ]] && opts+=(--aptopt='Acquire::Check-Valid-Until "false"')  # sid's Release file "expired"
    say "building a Debian $suite root with Slurm (mmdebstrap, about a minute)"
    rm -rf "$ROOT.new"
    mmdebstrap "${opts[@]}" "$suite" "$ROOT.new" "deb http://deb.debian.org/debian $suite main" \
        >"$BASE/mmdebstrap.log" 2>&1 || { tail -30 "$BASE/mmdebstrap.log" >&2; exit 1; }
    printf '127.0.0.1 localhost %s\n' "$(hostname)" >"$ROOT.new/etc/hosts"
    # MariaDB's client library 3.4 (trixie, sid) breaks slurmdbd ("Number of columns in result ... exceeds");
    # bookworm's 3.3 works against the newer server: up.sh starts slurmdbd with it (DANLU_SLURMDBD_LIBS)
    bookworm_libmariadb "$ROOT.new/opt/danlu/libmariadb"
    mv "$ROOT.new" "$ROOT"
}

bookworm_libmariadb() { # bookworm_libmariadb DIR: libmariadb.so.3 from bookworm's libmariadb3 package into DIR
    # taken from the package, not from the host's /usr/lib: nothing else may have installed it yet
    local dir=$1 tmp
    tmp=$(mktemp -d)
    # apt-get download writes into the current directory
    if ! (cd "$tmp" && { apt-get download -q libmariadb3 || { apt-get update -q && apt-get download -q libmariadb3; }; }) \
        >"$BASE/libmariadb.log" 2>&1; then
        tail -20 "$BASE/libmariadb.log" >&2
        rm -rf "$tmp"
        exit 1
    fi
    dpkg-deb -x "$tmp"/libmariadb3_*.deb "$tmp/x"
    mkdir -p "$dir"
    cp -L "$(find "$tmp/x" -name libmariadb.so.3 | head -n 1)" "$dir/"
    rm -rf "$tmp"
}

REBOUND=0  # bind() bound a path again: daemons already running still see the older directory
bind() { # bind PATH: the host's PATH at the same place inside the root
    local src=$1
    if mountpoint -q "$ROOT$src"; then
        # mounts outlive the processes of a session or CI run: a mount of a directory since deleted and made anew
        # (a fresh clone at the same path) shows the deleted one; bind the live directory again
        [[ $(stat -c %d:%i "$src") == "$(stat -c %d:%i "$ROOT$src")" ]] && return 0
        say "$src: the root holds a mount of an older directory at that path; binding the current one"
        umount -l "$ROOT$src"
        REBOUND=1
    fi
    mkdir -p "$ROOT$src"
    mount --rbind "$src" "$ROOT$src"
    mount --make-rslave "$ROOT$src"
}

mounts() {
    local d
    for d in /proc /sys /dev /tmp "$REPO" "$(python_base)"; do
        bind "$d"
    done
    share_mounts
}

# A daemon runs in the copy of the mounts made when it started (ip netns exec), and so do the jobs it starts: a path
# bound since (another clone of the repo, its python) is missing there. It is bound into each such copy as well.
share_mounts() {
    local pid ns d seen=" "
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        [[ $(readlink "/proc/$pid/root" 2>/dev/null) == "$ROOT" ]] || continue
        ns=$(readlink "/proc/$pid/ns/mnt" 2>/dev/null) || continue
        [[ $seen == *" $ns "* ]] && continue
        seen+="$ns "
        for d in "$REPO" "$(python_base)"; do
            [[ $(stat -c %d:%i "/proc/$pid/root$d" 2>/dev/null) == "$(stat -c %d:%i "$d")" ]] && continue
            say "$d: binding it where the running process $pid ($(cat "/proc/$pid/comm")) looks too"
            nsenter -t "$pid" -m mount --rbind "$d" "$ROOT$d"
        done
    done
}

unmount_all() {
    local m
    # deepest first
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v r="$ROOT/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

namespace() {
    if ! ip netns list | grep -qw "$NS"; then
        ip netns add "$NS"
        ip -n "$NS" link set lo up
        ip -n "$NS" addr add "$ADDR/32" dev lo
    fi
}

inside() { # inside CMD...: in the root and the namespace, with a clean environment
    ip netns exec "$NS" chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DANLU_SLURMDBD_LIBS=/opt/danlu/libmariadb \
        ${DANLU_TESTCLUSTER_HAVE_LOCK:+DANLU_TESTCLUSTER_HAVE_LOCK=$DANLU_TESTCLUSTER_HAVE_LOCK} "$@" 8>&-
}

write_clients() {
    mkdir -p "$BIN"
    local c
    for c in "${CLIENTS[@]}"; do
        cat >"$BIN/$c.new" <<EOF
#!/bin/sh
# $c of the Slurm $version test cluster (tests/cluster/chroot.sh): run inside its root and network namespace,
# in the caller's directory and environment
exec ip netns exec $NS chroot $ROOT /bin/sh -c 'cd "\$0" 2>/dev/null || cd /; exec "\$@"' "\$PWD" /usr/bin/$c "\$@"
EOF
        chmod 755 "$BIN/$c.new"
        mv "$BIN/$c.new" "$BIN/$c"
    done
}

lock() { # one up/down at a time (pytest workers start the cluster side by side); not held by what runs inside
    mkdir -p "$BASE"
    exec 8>"$BASE/.lock"
    flock -w 600 8 || { say "could not get $BASE/.lock within 600 s"; exit 1; }
}

case $action in
up)
    [[ $(id -u) -eq 0 ]] || { say "must run as root"; exit 1; }
    lock
    build_root
    namespace
    mounts
    write_clients
    if ((REBOUND)); then
        # each daemon lives in the mount namespace `ip netns exec` made when it started, a copy of the mounts of
        # that moment: a slurmd started before sees the older directory, and so do the jobs it starts (their
        # python and workdir are gone). They are started again, and see the current one.
        say "restarting the cluster's daemons, which see the older directory"
        inside /bin/bash "$REPO/tests/cluster/down.sh" || true
    fi
    inside /bin/bash "$REPO/tests/cluster/up.sh"
    say "clients: $BIN (first in PATH: danlu and the tests talk to this cluster)"
    ;;
down)
    lock
    if [[ -d $ROOT ]] && ip netns list | grep -qw "$NS"; then
        inside /bin/bash "$REPO/tests/cluster/down.sh" "$@" || true
    fi
    unmount_all
    ip netns list | grep -qw "$NS" && ip netns del "$NS"
    say "down"
    ;;
status)
    "$BIN/sinfo"
    ;;
run)
    inside "$@"
    ;;
*)
    echo "usage: chroot.sh up|down|status|run VERSION" >&2
    exit 2
    ;;
esac
