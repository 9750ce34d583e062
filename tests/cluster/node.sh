#!/usr/bin/env bash
# Stop/start the slurmd of ONE test-cluster node (to simulate a node failure), by pid file.
#   node.sh stop nodeN    SIGTERM the node's slurmd and wait until it has exited
#   node.sh kill nodeN    SIGKILL it (hard crash)
#   node.sh start nodeN   start `slurmd -N nodeN` again (ReturnToService=2 brings the node back)
#   node.sh status nodeN  exit 0 if its slurmd runs
# While stopped the node is "held": up.sh (e.g. another session's fixture) will not restart it
# for 10 minutes, unless `node.sh start` is run.
# Job step processes (slurmstepd) of the node keep running while its slurmd is down, as on a
# real node whose daemon died; with SlurmdTimeout=10 slurmctld marks the node down* soon after.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"

usage() {
    echo "usage: $0 stop|kill|start|status node1|node2|node3" >&2
    exit 2
}
(($# == 2)) || usage
action=$1
node=$2
[[ " ${NODES[*]} " == *" $node "* ]] || usage
pidf=$(pid_slurmd "$node")

case $action in
stop)
    touch "$(held_file "$node")"
    stop_by_pidfile "slurmd $node" "$pidf" slurmd 20
    ;;
kill)
    touch "$(held_file "$node")"
    if pid_alive "$pidf" slurmd; then
        pid=$(tr -dc '0-9' <"$pidf")
        say "slurmd $node: SIGKILL pid $pid"
        kill -KILL "$pid"
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    else
        say "slurmd $node: not running"
    fi
    rm -f "$pidf"
    ;;
start)
    rm -f "$(held_file "$node")"
    if pid_alive "$pidf" slurmd; then
        say "slurmd $node: already running (pid $(cat "$pidf"))"
        exit 0
    fi
    say "slurmd $node: starting"
    slurmd -N "$node" </dev/null >>"$LOGDIR/slurmd-$node.out" 2>&1 9>&-
    for ((i = 0; i < 75; i++)); do
        if pid_alive "$pidf" slurmd; then
            say "slurmd $node: running (pid $(cat "$pidf"))"
            exit 0
        fi
        sleep 0.2
    done
    echo "[testcluster] slurmd $node did not start; tail of $LOGDIR/slurmd-$node.log:" >&2
    tail -n 30 "$LOGDIR/slurmd-$node.log" >&2 || true
    exit 1
    ;;
status)
    if pid_alive "$pidf" slurmd; then
        echo "$node: slurmd running (pid $(cat "$pidf"))"
    else
        echo "$node: slurmd not running"
        exit 1
    fi
    ;;
*) usage ;;
esac
