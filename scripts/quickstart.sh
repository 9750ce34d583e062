#!/usr/bin/env bash
# Set up and run the main job on the embedded local default (no Slurm needed):
# Diffusion-DPO on a tiny denoiser, 2 ranks on the CPU through accelerate.
# Then show what came out: the loss over the steps, where the logs and checkpoints are, what to try next.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
sweep="quickstart-$(date +%H%M%S)"
danlu submit experiment=tiny_dpo cluster=local resources.gpus_per_node=2 --name "$sweep" --wait
run="$sweep/0"
echo
danlu report "$sweep"
danlu report "$sweep" --json | python -c '
import json, sys

series = json.load(sys.stdin)["runs"][0]["series"]["loss"]
pairs = list(zip(series["steps"], series["values"]))
every = max(1, len(pairs) // 6)
shown = pairs[::every] + ([pairs[-1]] if (len(pairs) - 1) % every else [])
print("\nloss over the steps:  " + "  ".join(f"{s}: {v:.3f}" for s, v in shown))
'
run_dir=$(danlu show "$run" --json | python -c 'import json, sys; print(json.load(sys.stdin)["run_dir"])')
cat <<EOF

logs:         $run_dir/logs   (danlu logs $run, or --rank 1 for the second rank)
checkpoints:  $run_dir/output   ($(cd "$run_dir/output" && find . -type f | sed 's|^\./||' | sort | head -n 4 | paste -sd ' ' -))

next:
  source .venv/bin/activate
  danlu submit experiment=tiny_dpo cluster=local -m args.learning_rate=1e-5,3e-5 --wait   # a sweep of 2 runs
  danlu report SWEEP                                                                       # which run won
  danlu cluster init mycluster   # on a Slurm login node: describe your cluster, then add cluster=mycluster --dry-run
EOF
