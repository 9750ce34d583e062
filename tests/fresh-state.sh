#!/usr/bin/env bash
# Put this machine back to "nothing installed" as far as danlu's scripts are concerned, then (with --run) time the
# README's two commands from there. It proves that every set-up step is in the project's own scripts.
#
#   bash tests/fresh-state.sh --yes          stop the test clusters, purge what the scripts install, remove .venv
#   bash tests/fresh-state.sh --yes --run    the same, then `bash scripts/quickstart.sh` and `bash tests/run.sh`
#
# Removed: the three test clusters (daemons, state, /etc/slurm, the newer versions' roots and network namespaces),
# the Debian packages that tests/cluster/*.sh and tests/run.sh install (with what apt pulled in for them only), this
# checkout's .venv and the danlu store and caches of root. Kept: apt's package lists and downloaded .debs, pip's
# cache (a fresh machine reaches the same registries, so these only save download time).
# Destructive and root only: it refuses without --yes.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
yes=0
run=0
for a in "$@"; do
    case $a in
    --yes) yes=1 ;;
    --run) run=1 ;;
    *)
        echo "error: unknown argument '$a'" >&2
        echo "hint: bash tests/fresh-state.sh --yes [--run]" >&2
        exit 2
        ;;
    esac
done
if ((!yes)); then
    echo "error: this purges packages and deletes the test clusters and .venv" >&2
    echo "hint: bash tests/fresh-state.sh --yes [--run]" >&2
    exit 2
fi
[[ $(id -u) -eq 0 ]] || {
    echo "error: must run as root (it removes Debian packages)" >&2
    echo "hint: sudo bash tests/fresh-state.sh --yes" >&2
    exit 2
}
say() { echo "[fresh-state] $*" >&2; }

# The Debian packages the project's scripts install, by the script that installs them
PACKAGES=(
    slurm-wlm slurmdbd slurmctld slurmd slurm-client munge mariadb-server mariadb-client libmariadb3  # cluster/up.sh
    mmdebstrap                                                                                         # cluster/chroot.sh
    tmux zsh openssh-server sshfs chromium                                                             # run.sh
)

say "stopping the test clusters"
for v in 24.11 26.05; do
    bash "$REPO/tests/cluster/down.sh" "$v" >/dev/null 2>&1 || true
done
if [[ -f /etc/slurm/slurm.conf ]] && command -v slurmctld >/dev/null 2>&1; then
    bash "$REPO/tests/cluster/down.sh" --purge >/dev/null 2>&1 || true
fi
# what a test or a killed script may have left: mounts inside the roots, namespaces
for v in 24.11 26.05; do
    root=/var/tmp/danlu-slurm-$v/root
    awk -v r="$root/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    ns=danlu-slurm-${v//./-}
    ip netns list 2>/dev/null | grep -qw "$ns" && ip netns del "$ns"
done
pkill -x sshfs 2>/dev/null || true

say "removing the clusters' state, roots and config"
rm -rf -- /var/tmp/danlu-testcluster /var/tmp/danlu-slurm-24.11 /var/tmp/danlu-slurm-26.05 /etc/slurm /etc/munge

installed=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" && installed+=("$p")
done
if ((${#installed[@]})); then
    say "purging ${installed[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "${installed[@]}" >/tmp/fresh-state-apt.log 2>&1 ||
        { tail -20 /tmp/fresh-state-apt.log >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get autoremove --purge -y -q >>/tmp/fresh-state-apt.log 2>&1 || true
fi
for b in sbatch slurmctld munged mariadbd mmdebstrap sshfs chromium; do
    if command -v "$b" >/dev/null 2>&1; then
        echo "error: $b is still installed after the purge" >&2
        exit 1
    fi
done

say "removing .venv and this user's danlu store and caches"
rm -rf -- "$REPO/.venv" "$REPO/.pytest_cache" "$HOME/.local/share/danlu" "$HOME/.cache/danlu" "$HOME/.config/danlu"
say "nothing of danlu's set-up is left on this machine"

((run)) || exit 0
cd "$REPO"
timed() { # timed CMD...: run it, say how long it took and how it ended; its exit code is returned
    local t0 rc
    t0=$(date +%s)
    "$@" && rc=0 || rc=$?
    say "$*: exit $rc after $(($(date +%s) - t0)) s"
    return $rc
}
timed bash scripts/quickstart.sh || exit $?
timed bash tests/run.sh -q
