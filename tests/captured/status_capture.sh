#!/usr/bin/env bash
# Re-capture the Slurm output that tests/test_slurm_parse.py parses, from the REAL test cluster
# (tests/cluster/up.sh must be running). Submits a handful of tiny jobs in states worth parsing,
# waits ~90 s (one job must hit its 1-minute time limit), saves the raw text of the exact
# sacct/squeue commands launcher/slurm.py runs, and cancels what is left.
#   bash tests/captured/status_capture.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/capture_common.sh"  # OUT (and the working directory), PY
SACCT_FORMAT=$("$PY" -c 'import sys; sys.path.insert(0, "../.."); from launcher.slurm import SACCT_FORMAT; print(SACCT_FORMAT)')
SQUEUE_FORMAT=$("$PY" -c 'import sys; sys.path.insert(0, "../.."); from launcher.slurm import SQUEUE_FORMAT; print(SQUEUE_FORMAT)')
sb() { sbatch --parsable -o /dev/null --comment="danlu:capture:$1" "${@:2}" | cut -d';' -f1; }

held=$(sb held --hold --wrap 'true')
arr=$(sb array --hold --array=0-4%2 --wrap 'true')
begin=$(sb begin --begin=now+1hour --wrap 'true')
dep=$(sb dep --dependency=afterok:$held --wrap 'true')
run=$(sb run -N2 --wrap 'sleep 120')
ok=$(sb ok --wrap 'echo ok')
fail=$(sb fail --wrap 'exit 3')
cancel=$(sb cancel --wrap 'sleep 120')
tlimit=$(sb tlimit --time=1 --wrap 'sleep 300')
sleep 5
scancel "$cancel"
ids="$held,$arr,$begin,$dep,$run,$ok,$fail,$cancel,$tlimit"
squeue -h -r -t all -o "$SQUEUE_FORMAT" -j "$ids" >squeue_states.txt
squeue -h -o "$SQUEUE_FORMAT" -j "$ids" >squeue_array_unexpanded.txt
sacct -X -D -n -P -o "$SACCT_FORMAT" -j "$ids" >sacct_early.txt
echo "waiting for the time limit of job $tlimit ..."
for ((i = 0; i < 60; i++)); do
    sacct -X -n -P -o State -j "$tlimit" | grep -q TIMEOUT && break
    sleep 3
done
sacct -X -D -n -P -o "$SACCT_FORMAT" -j "$ids" >sacct_states.txt
scancel "$held" "$arr" "$begin" "$dep" "$run" 2>/dev/null || true
sleep 1
sacct -X -D -n -P -o "$SACCT_FORMAT" -j "$ids" >sacct_after_cancel.txt
cat >status_jobs.txt <<EOT
held=$held
array=$arr
begin=$begin
dep=$dep
run=$run
ok=$ok
fail=$fail
cancel=$cancel
tlimit=$tlimit
EOT
# a job preempted (and requeued) by one of the higher-tier partition: each record of it (-D), right after
victim=$(sb victim -p debug-4090-01 -N2 --exclusive --requeue --wrap 'sleep 300')
for ((i = 0; i < 60; i++)); do
    [ "$(squeue -h -j "$victim" -t R -o %i | wc -l)" = 1 ] && break
    sleep 1
done
urgent=$(sb urgent -p urgent-4090 -N2 --exclusive --time=1 --wrap 'sleep 15')
for ((i = 0; i < 30; i++)); do
    sacct -X -D -n -P -o State -j "$victim" | grep -q PREEMPTED && break
    sleep 1
done
sleep 2
sacct -X -D -n -P -o "$SACCT_FORMAT" -j "$victim" >sacct_preempted_requeued.txt
squeue -h -r -t all -o "$SQUEUE_FORMAT" -j "$victim" >squeue_preempted_requeued.txt
scancel "$victim" "$urgent" 2>/dev/null || true
echo "victim=$victim" >>status_jobs.txt
echo "urgent=$urgent" >>status_jobs.txt
echo "captured: $(wc -l sacct_states.txt squeue_states.txt | tail -1)"
