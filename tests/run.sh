#!/usr/bin/env bash
# Set up and run the whole test suite: installs danlu into .venv, starts the project's own
# Slurm test cluster (tests/cluster/up.sh, via the pytest fixture) and runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# tools some tests drive (completion in real shells via tmux); installed like up.sh installs Slurm
need=()
command -v tmux >/dev/null || need+=(tmux)
command -v zsh >/dev/null || need+=(zsh)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >/dev/null 2>&1 \
    || echo "warning: could not install ${need[*]}" >&2
fi
source .venv/bin/activate
# Most tests share the test cluster happily and run on 3 workers (one file per worker); the few that
# preempt jobs, kill a node or stop slurmdbd would disturb the others, so they run alone afterwards.
# A rerun of just some tests: bash tests/run.sh tests/test_render.py
status=0
python -m pytest -m "not disruptive" -n 3 --dist loadfile --durations=15 "$@" || { rc=$?; [ "$rc" -eq 5 ] || status=$rc; }
python -m pytest -m disruptive --durations=10 "$@" || { rc=$?; [ "$rc" -eq 5 ] || status=$rc; }  # 5: none selected
exit $status
