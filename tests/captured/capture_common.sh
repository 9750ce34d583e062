# Sourced by the capture scripts (set -euo pipefail is theirs): write into tests/captured/<the cluster's Slurm
# version>/ (sinfo --version; put a newer cluster's clients first in PATH: tests/cluster/chroot.sh), or into the
# directory given as the script's first argument; PY reads danlu's own command lines from launcher/.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${1:-$HERE/$(sinfo --version | awk '{ split($2, v, "."); print v[1] "." v[2] }')}
mkdir -p "$OUT"
cd "$OUT"
export PYTHONPATH=$HERE/../..
PY=${PYTHON:-$HERE/../../.venv/bin/python}
