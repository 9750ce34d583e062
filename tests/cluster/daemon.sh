#!/usr/bin/env bash
# Stop/start the test cluster's slurmdbd (accounting) alone, by pid file, to test what danlu
# does without sacct. slurmctld keeps running and queues its accounting records meanwhile.
#   daemon.sh stop slurmdbd     SIGTERM it and wait until it has exited
#   daemon.sh start slurmdbd    start it again and wait until sacctmgr answers (60 s at most)
#   daemon.sh status slurmdbd   exit 0 if it runs
# Takes $DANLU_TESTCLUSTER_DIR/.lock (as up.sh/down.sh do) unless the caller already holds it and
# says so with DANLU_TESTCLUSTER_HAVE_LOCK=1 (a test that keeps other sessions' up.sh from
# restarting slurmdbd while it is stopped on purpose).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"

usage() {
    echo "usage: $0 stop|start|status slurmdbd" >&2
    exit 2
}
(($# == 2)) || usage
action=$1
[[ $2 == slurmdbd ]] || usage
[[ ${DANLU_TESTCLUSTER_HAVE_LOCK:-} == 1 ]] || take_lock

case $action in
stop) stop_by_pidfile slurmdbd "$PID_SLURMDBD" slurmdbd 30 ;;
start)
    if pid_alive "$PID_SLURMDBD" slurmdbd; then
        say "slurmdbd: already running (pid $(cat "$PID_SLURMDBD"))"
    else
        say "slurmdbd: starting"
        LD_LIBRARY_PATH=${DANLU_SLURMDBD_LIBS:-} slurmdbd </dev/null >>"$LOGDIR/slurmdbd.out" 2>&1 9>&-
    fi
    for ((i = 0; i < 120; i++)); do
        if sacctmgr -n -P list cluster >/dev/null 2>&1; then
            say "slurmdbd: answering (pid $(cat "$PID_SLURMDBD"))"
            exit 0
        fi
        sleep 0.5
    done
    echo "[testcluster] slurmdbd does not answer within 60 s; tail of $LOGDIR/slurmdbd.log:" >&2
    tail -n 30 "$LOGDIR/slurmdbd.log" >&2 || true
    exit 1
    ;;
status)
    if pid_alive "$PID_SLURMDBD" slurmdbd; then
        echo "slurmdbd running (pid $(cat "$PID_SLURMDBD"))"
    else
        echo "slurmdbd not running"
        exit 1
    fi
    ;;
*) usage ;;
esac
