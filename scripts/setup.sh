#!/usr/bin/env bash
# Create .venv with danlu and its train/test/report/lint extras. Idempotent; safe to run again.
# torch is pinned and installed first: a resolver left to itself would pick the newest torch
# and pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, accelerate, lightning, jsonargparse, launcher, pytest, plotly, tensorboard, ruff, mypy, debugpy" \
  >/dev/null 2>&1 || [ ! -x .venv/bin/py-spy ]; then
  .venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q --disable-pip-version-check -e ".[train,test,report,lint]" 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -c "import torch, accelerate, launcher" || { echo "setup failed: see the pip output above" >&2; exit 1; }
echo "danlu is installed in .venv (activate with: source .venv/bin/activate)" >&2
