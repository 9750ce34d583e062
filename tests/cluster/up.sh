#!/usr/bin/env bash
# Start a throwaway, single-machine, REAL Slurm cluster for the integration tests.
#
#   munged -> mariadbd -> slurmdbd -> (sacctmgr add cluster) -> slurmctld -> slurmd x3
#
# ClusterName=testcluster; node1,node2: 32 CPUs, 64 GB, 4x gpu:rtx4090; node3: 64 CPUs,
# 128 GB, 8x gpu:a10 (declared via SlurmdParameters=config_overrides, GPUs are char devices).
# Partitions: debug-4090-01 (default, node1-2), debug-A10-01 (node3), urgent-4090 (node1-2,
# higher PriorityTier: preempts/requeues jobs of debug-4090-01).
#
# Config goes to /etc/slurm (so sbatch/sinfo/sacct work without any environment); state, logs
# and pid files go to $DANLU_TESTCLUSTER_DIR (default /var/tmp/danlu-testcluster).
# Idempotent: every daemon whose pid file points at a live process is left alone.
# Needs root. Stop everything with down.sh; one node with node.sh stop|start nodeN.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# up.sh VERSION: 22.05 is this machine's own Slurm (the default); 24.11 and 26.05 run in a root of their own
case ${1:-22.05} in
22.05) ;;
24.11 | 26.05) exec bash "$HERE/chroot.sh" up "$1" ;;
*)
    echo "[testcluster] unknown Slurm version '$1' (22.05, 24.11 or 26.05)" >&2
    exit 2
    ;;
esac
# shellcheck source=common.sh
source "$HERE/common.sh"

T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

if [[ $(id -u) -ne 0 ]]; then
    echo "[testcluster] up.sh must run as root (it installs packages and starts daemons)" >&2
    exit 1
fi

# die MSG [LOGFILE...] : print MSG and the tail of each log, exit 1.
die() {
    local msg=$1 f
    shift
    echo "[testcluster] ERROR: $msg" >&2
    for f in "$@"; do
        if [[ -f $f ]]; then
            echo "----- tail -n 40 $f -----" >&2
            tail -n 40 "$f" >&2 || true
        fi
    done
    exit 1
}
# shellcheck disable=SC2154
trap 'rc=$?; echo "[testcluster] ERROR: up.sh failed at line $LINENO (exit $rc)" >&2' ERR

# wait_for TIMEOUT DESCRIPTION CMD... : poll CMD every 0.5 s until it succeeds.
wait_for() {
    local timeout=$1 deadline # $2 only names the wait for readers
    shift 2
    deadline=$(($(date +%s) + timeout))
    until "$@" >/dev/null 2>&1; do
        if (($(date +%s) >= deadline)); then
            return 1
        fi
        sleep 0.5
    done
}

take_lock

# --------------------------------------------------------------------------- packages
install_packages() {
    local missing=() b
    for b in slurmctld slurmd slurmdbd sacctmgr sbatch srun munged mariadbd mariadb-install-db; do
        command -v "$b" >/dev/null 2>&1 || missing+=("$b")
    done
    ((${#missing[@]} == 0)) && return 0
    say "missing ${missing[*]}: installing slurm-wlm slurmdbd munge mariadb-server (apt)"
    # No init system here: keep package scripts from starting services themselves
    # (mariadb's postinst would otherwise start a system mysqld).
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local pkgs=(slurm-wlm slurmdbd munge mariadb-server mariadb-client)
    local apt_log=$LOGDIR/apt.log
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"$apt_log" 2>&1; then
        say "apt-get install failed, running apt-get update and retrying"
        apt-get update -q >>"$apt_log" 2>&1 || true
        if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"$apt_log" 2>&1; then
            ((made_policy)) && rm -f /usr/sbin/policy-rc.d
            die "apt-get install ${pkgs[*]} failed" "$apt_log"
        fi
    fi
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    for b in "${missing[@]}"; do
        command -v "$b" >/dev/null 2>&1 || die "$b still missing after apt-get install" "$apt_log"
    done
    say "packages installed ($(elapsed) s)"
}

# --------------------------------------------------------------------------- config
slurm_at_least() { # slurm_at_least MAJOR: the installed Slurm is that major version or newer
    local v
    v=$(slurmctld -V 2>/dev/null | awk '{ print $2 }')
    ((${v%%.*} >= $1))
}

write_if_changed() { # write_if_changed DEST MODE  (content on stdin); returns 0 if changed
    local dest=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        return 1
    fi
    install -D -m "$mode" -o root -g root "$tmp" "$dest"
    rm -f "$tmp"
    return 0
}

CONFIG_CHANGED=0
write_config() {
    # the --signal at preemption: 22.05 takes it in SchedulerParameters, 24.11 and later in PreemptParameters
    if slurm_at_least 24; then
        PREEMPT_SIGNAL_LINE=PreemptParameters=send_user_signal PREEMPT_SIGNAL_SCHED=
    else
        PREEMPT_SIGNAL_LINE="# (22.05: preempt_send_user_signal in SchedulerParameters)"
        PREEMPT_SIGNAL_SCHED=,preempt_send_user_signal
    fi
    write_if_changed "$CONF_DIR/slurm.conf" 644 <<EOF && CONFIG_CHANGED=1
# Generated by danlu tests/cluster/up.sh -- throwaway test cluster, do not edit by hand.
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also is how long a requeued (e.g. preempted) job waits before it may start
# again: 120 s by default, 10 s here so preemption/requeue tests stay quick.
AuthInfo=cred_expire=10
CredType=cred/munge
MailProg=/bin/true
MpiDefault=none
SwitchType=switch/none
# No cgroup plugins: proctrack/linuxproc and task/none work in containers too.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
StateSaveLocation=$STATE/ctld
SlurmctldPidFile=$PID_SLURMCTLD
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmctldDebug=info
SlurmdSpoolDir=$STATE/spool/%n
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmdLogFile=$LOGDIR/slurmd-%n.log
SlurmdDebug=info
# Nodes may declare more CPUs/memory/GPUs than this machine has.
SlurmdParameters=config_overrides
ReturnToService=2
SlurmdTimeout=10
SlurmctldTimeout=30
InactiveLimit=0
KillWait=15
# An ended job leaves squeue after 30 s (Slurm's default: 300 s); tests of status without it wait that long.
MinJobAge=30
Waittime=0
MaxArraySize=1001
# Job arrays count one record per task; tests submit 1000-task arrays side by side.
MaxJobCount=200000
JobRequeue=1
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2,sched_min_interval=100000$PREEMPT_SIGNAL_SCHED
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
PriorityType=priority/basic
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
# A preempted job gets its --signal first (with a partition's GraceTime: that long before it is stopped).
$PREEMPT_SIGNAL_LINE
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu,gres/gpu:rtx4090,gres/gpu:a10
JobAcctGatherType=jobacct_gather/none
# Like sites that keep job environments for their users' support: sacct --env-vars shows them.
AccountingStoreFlags=job_env
JobCompType=jobcomp/none

NodeName=node[1-2] NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=32 RealMemory=64000 Gres=gpu:rtx4090:4 Port=17001-17002 State=UNKNOWN
NodeName=node3 NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=64 RealMemory=128000 Gres=gpu:a10:8 Port=17003 State=UNKNOWN

PartitionName=debug-4090-01 Nodes=node[1-2] Default=YES MaxTime=UNLIMITED State=UP PriorityTier=1 PreemptMode=REQUEUE
PartitionName=debug-A10-01 Nodes=node3 MaxTime=UNLIMITED State=UP PriorityTier=1 PreemptMode=REQUEUE
PartitionName=urgent-4090 Nodes=node[1-2] MaxTime=UNLIMITED State=UP PriorityTier=10 PreemptMode=OFF
EOF
    write_if_changed "$CONF_DIR/gres.conf" 644 <<EOF && CONFIG_CHANGED=1
# Generated by danlu tests/cluster/up.sh. Fake GPUs: character devices (mknod c 1 3).
AutoDetect=off
NodeName=node1 Name=gpu Type=rtx4090 File=$STATE/dev/node1/gpu[0-3]
NodeName=node2 Name=gpu Type=rtx4090 File=$STATE/dev/node2/gpu[0-3]
NodeName=node3 Name=gpu Type=a10 File=$STATE/dev/node3/gpu[0-7]
EOF
    if slurm_at_least 24; then
        # no cgroup plugin at all (22.05 refuses the value; from 24 slurmd would look for cgroups otherwise)
        write_if_changed "$CONF_DIR/cgroup.conf" 644 <<EOF && CONFIG_CHANGED=1
# Generated by danlu tests/cluster/up.sh.
CgroupPlugin=disabled
EOF
    fi
    write_if_changed "$CONF_DIR/slurmdbd.conf" 600 <<EOF && CONFIG_CHANGED=1
# Generated by danlu tests/cluster/up.sh.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
DebugLevel=info
LogFile=$LOGDIR/slurmdbd.log
PidFile=$PID_SLURMDBD
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurmtest
StorageLoc=slurm_acct_db
EOF
    return 0
}

make_dirs_and_devices() {
    mkdir -p "$RUN" "$LOGDIR" "$STATE/ctld" "$DB_RUN" "$MUNGE_RUN"
    local n i count
    for n in "${NODES[@]}"; do
        mkdir -p "$STATE/spool/$n" "$STATE/dev/$n"
        count=4
        [[ $n == node3 ]] && count=8
        for ((i = 0; i < count; i++)); do
            local dev=$STATE/dev/$n/gpu$i
            if [[ ! -c $dev ]]; then
                rm -f "$dev"
                mknod "$dev" c 1 3 # same major/minor as /dev/null
                chmod 666 "$dev"
            fi
        done
    done
}

# --------------------------------------------------------------------------- daemons
start_munged() {
    if pid_alive "$PID_MUNGED" munged; then
        say "munged: already running (pid $(cat "$PID_MUNGED"))"
        return
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "munged: creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge "$MUNGE_RUN"
    chmod 755 /run/munge "$MUNGE_RUN"
    if [[ -S /run/munge/munge.socket.2 ]] && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        # Someone else's munged (not started by us) is already serving: use it, don't own it.
        say "munged: a munged not started by up.sh is serving /run/munge; using it"
        return
    fi
    say "munged: starting"
    runuser -u munge -- munged --force --pid-file="$PID_MUNGED" \
        --log-file="$MUNGE_RUN/munged.log" </dev/null >>"$LOGDIR/munged.out" 2>&1 9>&- ||
        die "munged failed to start" "$LOGDIR/munged.out" "$MUNGE_RUN/munged.log"
    wait_for 15 munged sh -c 'munge -n </dev/null | unmunge' ||
        die "munged does not answer" "$MUNGE_RUN/munged.log"
}

db_sql() { mariadb --no-defaults --socket="$DB_RUN/mysqld.sock" -u root "$@"; }

start_mariadb() {
    if pid_alive "$PID_MARIADB" mariadbd; then
        say "mariadbd: already running (pid $(cat "$PID_MARIADB"))"
        return
    fi
    local log=$LOGDIR/mariadb.log
    if [[ ! -d $DB_DIR/mysql ]]; then
        say "mariadbd: initialising datadir $DB_DIR"
        mkdir -p "$DB_DIR"
        chown mysql:mysql "$DB_DIR"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR" \
            --auth-root-authentication-method=socket --skip-test-db >"$LOGDIR/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed" "$LOGDIR/mariadb-install.log"
    fi
    chown -R mysql:mysql "$DB_DIR" "$DB_RUN"
    touch "$log"
    chown mysql:mysql "$log"
    say "mariadbd: starting on 127.0.0.1:$DB_PORT"
    setsid mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" \
        --socket="$DB_RUN/mysqld.sock" --pid-file="$PID_MARIADB" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
        --log-error="$log" --innodb-buffer-pool-size=128M \
        --innodb-lock-wait-timeout=900 </dev/null >>"$LOGDIR/mariadb.out" 2>&1 9>&- &
    wait_for 60 mariadbd mariadb-admin --no-defaults --socket="$DB_RUN/mysqld.sock" -u root ping ||
        die "mariadbd did not come up within 60 s" "$log" "$LOGDIR/mariadb.out"
    wait_for 10 "mariadbd pid file" pid_alive "$PID_MARIADB" mariadbd ||
        die "mariadbd wrote no pid file $PID_MARIADB" "$log"
    db_sql -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmtest';
               CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmtest';
               GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
               GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" ||
        die "could not create the slurm database user" "$log"
}

start_slurmdbd() {
    if pid_alive "$PID_SLURMDBD" slurmdbd; then
        say "slurmdbd: already running (pid $(cat "$PID_SLURMDBD"))"
        return
    fi
    say "slurmdbd: starting"
    LD_LIBRARY_PATH=${DANLU_SLURMDBD_LIBS:-} slurmdbd </dev/null >>"$LOGDIR/slurmdbd.out" 2>&1 9>&- ||
        die "slurmdbd failed to start" "$LOGDIR/slurmdbd.out" "$LOGDIR/slurmdbd.log"
    wait_for 60 slurmdbd sacctmgr -n -P list cluster ||
        die "slurmdbd does not answer sacctmgr within 60 s" "$LOGDIR/slurmdbd.log"
}

add_cluster() {
    if sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
        return
    fi
    say "sacctmgr: adding cluster $CLUSTER"
    sacctmgr -i add cluster "$CLUSTER" >"$LOGDIR/sacctmgr.out" 2>&1 ||
        die "sacctmgr add cluster failed" "$LOGDIR/sacctmgr.out"
}

start_slurmctld() {
    if pid_alive "$PID_SLURMCTLD" slurmctld; then
        say "slurmctld: already running (pid $(cat "$PID_SLURMCTLD"))"
        return
    fi
    say "slurmctld: starting"
    slurmctld </dev/null >>"$LOGDIR/slurmctld.out" 2>&1 9>&- ||
        die "slurmctld failed to start" "$LOGDIR/slurmctld.out" "$LOGDIR/slurmctld.log"
    wait_for 30 slurmctld scontrol ping ||
        die "slurmctld does not answer 'scontrol ping' within 30 s" "$LOGDIR/slurmctld.log"
}

start_slurmd() {
    local n=$1 pidf
    pidf=$(pid_slurmd "$n")
    if pid_alive "$pidf" slurmd; then
        say "slurmd $n: already running (pid $(cat "$pidf"))"
        return
    fi
    say "slurmd $n: starting"
    slurmd -N "$n" </dev/null >>"$LOGDIR/slurmd-$n.out" 2>&1 9>&- ||
        die "slurmd -N $n failed to start" "$LOGDIR/slurmd-$n.out" "$LOGDIR/slurmd-$n.log"
    wait_for 15 "slurmd $n pid" pid_alive "$pidf" slurmd ||
        die "slurmd $n is not running" "$LOGDIR/slurmd-$n.log"
}

# All nodes responding and usable (idle, or busy with jobs when the cluster was already up);
# nodes held by node.sh stop/kill are left out.
# A node left down/drained by an earlier test while its slurmd is alive gets resumed once,
# unless its reason contains "keep" (a test that drains a node on purpose should say so)
# (output of this function is swallowed by wait_for; RESUMED is reported afterwards).
nodes_ready() {
    local name state reason ok=0 total=0
    while read -r name state reason; do
        [[ -z $name ]] && continue
        total=$((total + 1))
        if node_held "$name"; then
            ok=$((ok + 1))
            continue
        fi
        case $state in
        idle | mixed | allocated | completing | planned) ok=$((ok + 1)) ;;
        down | drained | draining | fail | failing | down+drain | idle+drain | mixed+drain | allocated+drain)
            if [[ $reason == *keep* ]]; then
                ok=$((ok + 1))
            elif [[ -z ${RESUMED[$name]:-} ]]; then
                RESUMED[$name]=$state
                scontrol update nodename="$name" state=resume >/dev/null 2>&1 || true
            fi
            ;;
        esac
    done < <(sinfo -h -N -o '%N %T %E' 2>/dev/null | sort -u -k1,1)
    ((total == ${#NODES[@]} && ok == total))
}

# --------------------------------------------------------------------------- main
mkdir -p "$LOGDIR"
install_packages
write_config
make_dirs_and_devices

all_running=1
for pair in "$PID_MUNGED:munged" "$PID_MARIADB:mariadbd" "$PID_SLURMDBD:slurmdbd" "$PID_SLURMCTLD:slurmctld"; do
    pid_alive "${pair%:*}" "${pair##*:}" || all_running=0
done
for n in "${NODES[@]}"; do
    if node_held "$n"; then
        say "slurmd $n: held down by node.sh stop/kill ($(held_file "$n")); not starting it"
        continue
    fi
    pid_alive "$(pid_slurmd "$n")" slurmd || all_running=0
done

# a controller that answers already runs on the config it read before (its pid file may be stale after a reconfigure)
controller_was_up=0
scontrol ping 2>/dev/null | grep -q "is UP" && controller_was_up=1
if ((all_running)); then
    say "already running; nothing to do ($(elapsed) s)"
else
    start_munged
    start_mariadb
    start_slurmdbd
    add_cluster
    start_slurmctld
    for n in "${NODES[@]}"; do
        node_held "$n" || start_slurmd "$n"
    done
fi

if ((CONFIG_CHANGED && controller_was_up)); then
    # a checkout with another config than the running daemons': they read it again (an RPC, so it reaches the
    # controller whatever its pid file says; jobs and state are kept)
    say "config in $CONF_DIR changed while the cluster ran: scontrol reconfigure"
    scontrol reconfigure || die "scontrol reconfigure failed" "$LOGDIR/slurmctld.log"
fi
declare -A RESUMED=()
wait_for 60 "nodes ready" nodes_ready || {
    sinfo -N -l >&2 || true
    die "nodes not ready within 60 s" "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd-node1.log"
}
for n in "${!RESUMED[@]}"; do
    say "node $n was '${RESUMED[$n]}' (left so by an earlier test?): resumed it"
done
wait_for 30 "sacct" sacct -n -X -S now-1minutes ||
    die "sacct does not answer" "$LOGDIR/slurmdbd.log"

cat >"$STATE/cluster.env" <<EOF
DANLU_TESTCLUSTER_DIR=$STATE
DANLU_TESTCLUSTER_LOGDIR=$LOGDIR
DANLU_TESTCLUSTER_RUNDIR=$RUN
DANLU_TESTCLUSTER_CONF=$CONF_DIR/slurm.conf
DANLU_TESTCLUSTER_NAME=$CLUSTER
EOF

say "ready in $(elapsed) s"
say "config : $CONF_DIR/slurm.conf $CONF_DIR/gres.conf $CONF_DIR/slurmdbd.conf"
say "logs   : $LOGDIR/ (slurmctld.log slurmdbd.log slurmd-nodeN.log mariadb.log), munged: $MUNGE_RUN/munged.log"
say "pids   : $RUN/*.pid $MUNGE_RUN/munged.pid $DB_RUN/mariadbd.pid"
say "state  : $STATE (stop: $HERE/down.sh; one node: $HERE/node.sh stop|start nodeN)"
sinfo
