#!/bin/bash
#SBATCH --job-name=golden/0
#SBATCH --comment=danlu:0123456789ab:0
#SBATCH --partition=debug-A10-01
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --gres=gpu:a10:8
#SBATCH --time=2-00:00:00
#SBATCH --output=/runs/golden/.slurm/job-%j.out
#SBATCH --open-mode=append
#SBATCH --signal=USR2@120
#SBATCH --requeue
#SBATCH --export=ALL

# danlu 0.1.0 -- run golden/0
set -euo pipefail
umask 077  # run dirs, logs and scripts are readable by their owner only

# ---- environment ----
source <repo>/envs/ibq/.venv/bin/activate
# passed from the submitting environment by name, never written here: HF_TOKEN WANDB_API_KEY HUGGING_FACE_HUB_TOKEN

# ---- facts about this job, asked of Slurm once here for every node and task: a call that fails for a moment ----
# ---- (a busy controller) is tried again and has a fallback, and never ends the job (set -e) ----
danlu_retry() { local n; for n in 1 2 3; do "$@" 2>/dev/null && return 0; sleep "$n"; done; return 1; }
# when Slurm ends this job (its time limit; the agents checkpoint the configured grace before it): Slurm's own
# variable where it sets one, else this script's start plus the limit (no call to slurmctld)
export DANLU_JOB_END=${SLURM_JOB_END_TIME:-$(($(date +%s) + 172800))}
# ---- head node and rendezvous port (picked free on the head node, never a fixed port shared by every job) ----
# this script runs on the job's first node, the head: its own name, else the first of the job's node list
danlu_nodes=()
[ -n "${SLURMD_NODENAME:-}" ] || mapfile -t danlu_nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST" || true)
export DANLU_HEAD_NODE="${SLURMD_NODENAME:-${danlu_nodes[0]:-$(hostname -s)}}"
danlu_addr=$( (danlu_retry scontrol show node "$DANLU_HEAD_NODE" -o || true) | tr ' ' '\n' | sed -n 's/^NodeAddr=//p')
danlu_addr=${danlu_addr:-$DANLU_HEAD_NODE}
export DANLU_HEAD_ADDR=$(getent ahostsv4 "$danlu_addr" | awk 'NR==1 {print $1}' || true)
export DANLU_HEAD_ADDR=${DANLU_HEAD_ADDR:-$danlu_addr}
# the port is picked here, on the head node
# the assignment stands apart from the export: export's own status would hide the command's failure
DANLU_PORT=$(<python> -I -m launcher.job.port) || { echo "danlu: no rendezvous port: the port command failed (exit $?)" >&2; exit 1; }
export DANLU_PORT

# ---- the run of this job ----
case "${SLURM_ARRAY_TASK_ID:-0}" in
  0)
    export DANLU_RUN_ID=golden/0
    export DANLU_SWEEP=golden
    export DANLU_ATTEMPT=1
    export DANLU_RUN_DIR=/runs/golden/0
    export DANLU_WORKDIR=/code/SEED-Voken
    export DANLU_STEP_MARK=/runs/golden/0/logs/attempt-1/step-started
    export WANDB_RUN_GROUP=golden
    export WANDB_NAME=golden/0
    export DANLU_COMMAND='python main.py fit --config=configs/IBQ/gpu/imagenet_ibqgan_1024.yaml --config=/runs/golden/scripts/run-0.attempt-1.lightning.yaml --trainer.devices=8 --trainer.num_nodes=2'
    ;;
  *) echo "danlu: no run for array index ${SLURM_ARRAY_TASK_ID:-0}" >&2; exit 2 ;;
esac

# ---- launch: one node agent per task; it starts $DANLU_COMMAND with this node's rank,
# ---- collects per-node/per-rank logs and ends the whole job as soon as any rank fails ----
cd "$DANLU_WORKDIR"
export SUBMITIT_EXECUTOR=slurm  # the node agent runs through submitit (pickled callable per array task)
export DANLU_VERSION=0.1.0 DANLU_JOB_PROTOCOL=2 DANLU_AGENT_SHA256=@AGENT_SHA256@  # the job side checks them before it unpickles its agent
# a requeued job numbers its steps from 0 again, and slurmctld may still hold a signal for an earlier start's step
# (srun's stop of a step on a node that died, sent when the node is back): it would stop this start's step of the
# same number. Start K (SLURM_RESTART_COUNT) first uses up steps 0..K-1 with a no-op, so its own is a new number.
for ((danlu_step = 0; danlu_step < ${SLURM_RESTART_COUNT:-0}; danlu_step++)); do
    srun --nodes=1 --ntasks=1 --cpus-per-task=1 --export=ALL true || true
done
# srun may fail to create the step of a job it just allocated (seen right after an exclusive job left the nodes:
# "Invalid generic resource (gres) specification"): no task ran, so it tries again; a step that ran is never rerun
mkdir -p "$(dirname "$DANLU_STEP_MARK")"
for danlu_try in 1 2 3; do
    rm -f "$DANLU_STEP_MARK"
    danlu_rc=0
    srun --kill-on-bad-exit=1 --nodes=2 --ntasks-per-node=8 --cpus-per-task=8 --export=ALL \
        <python> -I -u -m launcher.job /runs/golden/.submitit/%j /runs/golden/.submitit/0123456789ab-0 || danlu_rc=$?
    if [ "$danlu_rc" -eq 0 ] || [ -e "$DANLU_STEP_MARK" ] || [ "$danlu_try" -eq 3 ]; then
        break
    fi
    echo "danlu: srun started no task (exit $danlu_rc): trying again in 10s ($danlu_try of 3)" >&2
    sleep 10
done
exit "$danlu_rc"

