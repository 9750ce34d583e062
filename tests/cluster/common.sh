# Shared paths and helpers for up.sh, down.sh and node.sh (sourced, not executed).
# shellcheck shell=bash disable=SC2034

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

STATE=${DANLU_TESTCLUSTER_DIR:-/var/tmp/danlu-testcluster}
RUN=$STATE/run            # pid files of root daemons (slurm*)
LOGDIR=$STATE/log
MUNGE_RUN=$STATE/run/munge  # owned by munge: munged pid + log
DB_RUN=$STATE/run/mysql     # owned by mysql: mariadbd pid + socket
DB_DIR=$STATE/mysql
DB_PORT=${DANLU_TESTCLUSTER_DBPORT:-17306}
CONF_DIR=/etc/slurm
NODES=(node1 node2 node3)
CLUSTER=testcluster

PID_MUNGED=$MUNGE_RUN/munged.pid
PID_MARIADB=$DB_RUN/mariadbd.pid
PID_SLURMDBD=$RUN/slurmdbd.pid
PID_SLURMCTLD=$RUN/slurmctld.pid
pid_slurmd() { echo "$RUN/slurmd-$1.pid"; }

# node.sh stop|kill leaves a "held" marker so that a concurrent up.sh (another pytest session's
# fixture) does not restart a node a test took down on purpose. Markers older than
# HOLD_MAX_AGE seconds are stale (crashed test) and ignored. node.sh start removes it.
HOLD_MAX_AGE=600
held_file() { echo "$RUN/slurmd-$1.held"; }
node_held() {
    local f
    f=$(held_file "$1")
    [[ -f $f ]] || return 1
    (($(date +%s) - $(stat -c %Y "$f") < HOLD_MAX_AGE)) && return 0
    rm -f "$f"
    return 1
}

say() { echo "[testcluster] $*"; }

# pid_alive PIDFILE COMM -> 0 if the pid in PIDFILE is alive and is the program COMM
# (guards against a stale pid file whose pid was reused by something else).
pid_alive() {
    local file=$1 comm=$2 pid
    [[ -s $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]
}

# stop_by_pidfile NAME PIDFILE COMM [TIMEOUT] : SIGTERM, wait, then SIGKILL.
stop_by_pidfile() {
    stop_group "${4:-30}" "$1" "$2" "$3"
}

# stop_group TIMEOUT NAME PIDFILE COMM [NAME PIDFILE COMM]... : SIGTERM all of them at once,
# wait until all have exited (SIGKILL whatever is left after TIMEOUT s), remove the pid files.
stop_group() {
    local timeout=$1 name file comm pid i alive
    shift
    local -a names=() pids=() files=()
    while (($# >= 3)); do
        name=$1 file=$2 comm=$3
        shift 3
        if pid_alive "$file" "$comm"; then
            pid=$(tr -dc '0-9' <"$file")
            say "$name: stopping pid $pid"
            kill -TERM "$pid" 2>/dev/null || true
            names+=("$name") pids+=("$pid") files+=("$file")
        else
            say "$name: not running"
            rm -f "$file"
        fi
    done
    ((${#pids[@]} == 0)) && return 0
    for ((i = 0; i < timeout * 10; i++)); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if kill -0 "${pids[i]}" 2>/dev/null; then
            say "${names[i]}: still alive after ${timeout}s, sending SIGKILL"
            kill -KILL "${pids[i]}" 2>/dev/null || true
        fi
    done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    rm -f "${files[@]}"
}

# Serialise up/down/node against concurrent callers (e.g. two pytest sessions).
take_lock() {
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    if ! flock -w 300 9; then
        echo "[testcluster] could not get $STATE/.lock within 300 s" >&2
        exit 1
    fi
}
