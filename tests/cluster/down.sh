#!/usr/bin/env bash
# Stop what tests/cluster/up.sh started, by pid file only (never by name), in reverse order:
# slurmd x3 -> slurmctld -> slurmdbd -> mariadbd -> munged. Safe when nothing runs.
# Jobs still in the queue are cancelled first so no job processes are left behind.
# Config (/etc/slurm) and state ($DANLU_TESTCLUSTER_DIR) are kept; `down.sh --purge` also
# deletes the state dir (database, spool, logs).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# down.sh [VERSION] [--purge]: 24.11 / 26.05 are the clusters of tests/cluster/chroot.sh
case ${1:-} in
24.11 | 26.05) exec bash "$HERE/chroot.sh" down "$@" ;;
22.05) shift ;;
esac
# shellcheck source=common.sh
source "$HERE/common.sh"

purge=0
[[ ${1:-} == --purge ]] && purge=1

take_lock

if pid_alive "$PID_SLURMCTLD" slurmctld; then
    njobs=$(squeue -h -o %A 2>/dev/null | wc -l || true)
    if ((njobs > 0)); then
        say "cancelling $njobs queued/running job(s)"
        squeue -h -o %A 2>/dev/null | sort -u | xargs -r scancel 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            [[ -z $(squeue -h -t running,completing -o %A 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
fi

args=()
for ((k = ${#NODES[@]} - 1; k >= 0; k--)); do
    args+=("slurmd ${NODES[k]}" "$(pid_slurmd "${NODES[k]}")" slurmd)
done
stop_group 20 "${args[@]}" # the three slurmd together
stop_by_pidfile slurmctld "$PID_SLURMCTLD" slurmctld 30
stop_by_pidfile slurmdbd "$PID_SLURMDBD" slurmdbd 30
stop_by_pidfile mariadbd "$PID_MARIADB" mariadbd 60
stop_by_pidfile munged "$PID_MUNGED" munged 15

if ((purge)); then
    case $STATE in
    / | /var | /var/tmp | /tmp | /root | "") say "refusing to purge '$STATE'" ;;
    *)
        say "purging $STATE"
        rm -rf -- "$STATE"
        ;;
    esac
fi
say "down"
