#!/usr/bin/env bash
# Re-capture the text launcher/cluster_facts.py parses (`danlu cluster init`), from the REAL test cluster
# (tests/cluster/up.sh must be running): the exact commands it runs.
#   bash tests/captured/facts_capture.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# writes into tests/captured/<the cluster's Slurm version>/ (sinfo --version; put a newer cluster's clients
# first in PATH: tests/cluster/chroot.sh), or into the directory given
OUT=${1:-$HERE/$(sinfo --version | awk '{ split($2, v, "."); print v[1] "." v[2] }')}
mkdir -p "$OUT"
cd "$OUT"
export PYTHONPATH=$HERE/../..
PY=${PYTHON:-$HERE/../../.venv/bin/python}
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
