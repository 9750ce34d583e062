#!/usr/bin/env bash
# Re-capture the sinfo/squeue text that tests/test_cluster_view.py parses, from the REAL test
# cluster (tests/cluster/up.sh must be running): the exact commands launcher/views/cluster.py runs,
#   cluster_sinfo_busy.txt / cluster_squeue_busy.txt  while jobs hold GPUs and others pend;
#   cluster_sinfo_drained.txt                         while node3 is drained for a moment
#                                                     (resumed right after; running jobs are untouched).
# Jobs of other users of the cluster at that moment are part of the capture.
#   bash tests/captured/cluster_capture.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/capture_common.sh"  # OUT (and the working directory), PY
mapfile -t SINFO < <("$PY" -c 'import sys; sys.path.insert(0, "../.."); from launcher.views.cluster import SINFO_CMD; print("\n".join(SINFO_CMD))')
mapfile -t SQUEUE < <("$PY" -c 'import sys; sys.path.insert(0, "../.."); from launcher.views.cluster import SQUEUE_CMD; print("\n".join(SQUEUE_CMD))')
sb() { sbatch --parsable -o /dev/null --comment="danlu:capture:$1" "${@:2}" | cut -d';' -f1; }

two=$(sb two -p debug-4090-01 --gres=gpu:rtx4090:2 --wrap 'sleep 60')
a10=$(sb a10 -p debug-A10-01 --gres=gpu:a10:3 --wrap 'sleep 60')
held=$(sb held -p debug-4090-01 --gres=gpu:rtx4090:1 --hold --wrap 'true')
arr=$(sb array -p debug-A10-01 --gres=gpu:a10:1 --hold --array=0-2 --wrap 'true')
both=$(sb both -p debug-4090-01,debug-A10-01 --gres=gpu:1 --hold --wrap 'true')
trap 'scancel "$two" "$a10" "$held" "$arr" "$both" 2>/dev/null || true' EXIT
for ((i = 0; i < 60; i++)); do  # until both GPU jobs run
    [ "$(squeue -h -j "$two,$a10" -t R -o %i | wc -l)" = 2 ] && break
    sleep 1
done
"${SINFO[@]}" >cluster_sinfo_busy.txt
"${SQUEUE[@]}" >cluster_squeue_busy.txt
scontrol update nodename=node3 state=drain reason=danlu-capture
"${SINFO[@]}" >cluster_sinfo_drained.txt || true
scontrol update nodename=node3 state=resume
cat >cluster_jobs.txt <<EOT
# job ids of the capture (squeue user: $(id -un))
two=$two  # 2x rtx4090 on debug-4090-01, running
a10=$a10  # 3x a10 on debug-A10-01, running
held=$held  # held, pending
array=$arr  # held 3-task array, pending
both=$both  # held, pending in two partitions
EOT
cat cluster_sinfo_busy.txt cluster_squeue_busy.txt cluster_sinfo_drained.txt
