#!/usr/bin/env bash
# Set up and run the main job on the embedded local default (no Slurm needed):
# Diffusion-DPO on a tiny denoiser, 2 ranks on the CPU through accelerate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
danlu submit experiment=tiny_dpo cluster=local resources.gpus_per_node=2 --name "quickstart-$(date +%H%M%S)" --wait
danlu status --all | tail -n 3
