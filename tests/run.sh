#!/usr/bin/env bash
# Set up and run the whole test suite: installs danlu into .venv, starts the project's own
# Slurm test cluster (tests/cluster/up.sh, via the pytest fixture) and runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
exec python -m pytest "$@"
