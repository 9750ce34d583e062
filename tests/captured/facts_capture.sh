#!/usr/bin/env bash
# Re-capture the text launcher/cluster_facts.py parses (`danlu cluster init`), from the REAL test cluster
# (tests/cluster/up.sh must be running): the exact commands it runs.
#   bash tests/captured/facts_capture.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/capture_common.sh"  # OUT (and the working directory), PY
mapfile -t SINFO < <("$PY" -c 'import sys; sys.path.insert(0, "../.."); from launcher.cluster_facts import SINFO_NODES; print("\n".join(SINFO_NODES))')
scontrol show config >facts_config.txt
scontrol show partition -o >facts_partitions.txt
"${SINFO[@]}" >facts_sinfo.txt
sacctmgr -n -P show assoc "user=$(id -un)" format=MaxSubmitJobs,MaxJobs,GrpTRES >facts_assoc.txt
# an association with limits: a throwaway user, removed again
sacctmgr -i add user danlu-cap account=root GrpTRES=gres/gpu=4,cpu=8 MaxSubmitJobs=30 >/dev/null
sacctmgr -n -P show assoc user=danlu-cap format=MaxSubmitJobs,MaxJobs,GrpTRES >facts_assoc_grptres.txt
sacctmgr -i delete user danlu-cap >/dev/null
wc -l facts_*.txt
