#!/usr/bin/env bash
# Set up and run the whole test suite: installs danlu into .venv, starts the project's own
# Slurm test cluster (tests/cluster/up.sh, via the pytest fixture) and runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# tools some tests drive (completion in real shells via tmux, a shared home); installed like up.sh installs Slurm
need=()
command -v tmux >/dev/null || need+=(tmux)
command -v zsh >/dev/null || need+=(zsh)
# a shared home over a network file system (tests/test_store_shared.py: two sshfs mounts, one sshd on loopback)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v sshfs >/dev/null || need+=(sshfs)
# a real browser for the HTML report's test (tests/test_report.py, tests/browser_helpers.py)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "error: the tests need ${need[*]}, and only root with apt-get can install them here" >&2
    echo "hint: install them (Debian: apt-get install ${need[*]}), or run tests/run.sh as root" >&2
    exit 2
  fi
  apt_log=$(mktemp)
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >"$apt_log" 2>&1 \
    || { tail -n 20 "$apt_log" >&2; echo "error: could not install ${need[*]}" >&2; exit 1; }
  rm -f "$apt_log"
fi
source .venv/bin/activate
# Most tests share the test cluster happily and run on 3 workers (one file per worker); the few that
# preempt jobs, kill a node or stop slurmdbd would disturb the others, so they run alone afterwards. The longest
# files go first (tests/conftest.py LONGEST_FIRST), so that the workers end together.
# A rerun of just some tests: bash tests/run.sh tests/test_render.py (on 22.05, or on DANLU_TEST_SLURM's version)
#
# Newer Slurm versions (tests/cluster/chroot.sh): with no tests named, the Slurm-facing files also run against the
# 24.11 and 26.05 test clusters -- submit, arrays and split, status and reasons, cancel, rerun, requeue after the
# time limit and preemption, slurmdbd down, cluster view, crash recovery, the job side's signals and launchers.
# Each version has its own controller and nodes. The phases, so that the 2 cores are never asked for much more than
# they have (all three versions' shared tests at once, 9 workers, made tests 5-8x slower than alone and broke
# their bounds; one after the other the whole run is shorter):
#   1. 22.05's shared tests (3 workers; ~9 min, 1.3 CPUs) beside the newer versions' disruptive tests (slurmdbd
#      down, preemption, GrpTRES, ports: one at a time on their own clusters, mostly waiting for Slurm)
#   2. 24.11's and 26.05's shared tests side by side (3 workers each; ~9 min, 1.5 CPUs)
#   3. 22.05's disruptive tests (the fault matrix and the rest, ~14 min) alone: their bounds time the job side
# The fault matrix runs on 22.05 only: on all three it would not fit CI's 45 minutes on 2 cores.
SLURM_FACING=(tests/test_status.py tests/test_sweeps.py tests/test_crash_safety.py tests/test_requeue.py
              tests/test_cluster_view.py tests/test_cluster.py tests/test_resilience.py tests/test_signals.py
              tests/test_world.py tests/test_launch.py)
NEWER=(24.11 26.05)
named=0
for a in "$@"; do [[ "$a" == -* ]] || named=1; done
shared() {  # shared VERSION PYTEST-ARGS...: the tests that share the cluster, on 3 workers
  local version=$1
  shift
  DANLU_TEST_SLURM=$version python -m pytest -m "not disruptive" -n 3 --dist loadfile --no-loadscope-reorder \
    --durations=15 "$@" || { local rc=$?; [ "$rc" -eq 5 ] || return $rc; }  # 5: none selected
}
disruptive() {  # disruptive VERSION PYTEST-ARGS...: the tests that disturb the cluster, one at a time
  local version=$1
  shift
  DANLU_TEST_SLURM=$version python -m pytest -m disruptive --durations=10 "$@" \
    || { local rc=$?; [ "$rc" -eq 5 ] || return $rc; }
}
logs=$(mktemp -d)
status=0
if [ -z "${DANLU_TEST_SLURM:-}" ] && [ $named = 0 ]; then
  for v in "${NEWER[@]}"; do bash tests/cluster/up.sh "$v" >"$logs/up-$v.log" 2>&1 || { cat "$logs/up-$v.log"; exit 1; }; done
  phase() { echo "=================== $* ($(date +%T)) ===================" >&2; }
  newer() {  # newer shared|disruptive LOG PYTEST-ARGS...: that part of the Slurm-facing files on each newer version,
    local part=$1 log=$2  # in the background, into $logs/<version><LOG>.log; `wait_newer` waits for them
    shift 2
    pids=()
    for v in "${NEWER[@]}"; do
      "$part" "$v" "$@" "${SLURM_FACING[@]}" >"$logs/$v$log.log" 2>&1 &
      pids+=($!)
    done
  }
  wait_newer() { for pid in "${pids[@]}"; do wait "$pid" || status=1; done; }
  phase "1: Slurm 22.05 shared, beside ${NEWER[*]} disruptive"
  newer disruptive -disruptive "$@"
  shared 22.05 "$@" 2>&1 | tee "$logs/22.05.log" || status=1
  wait_newer
  phase "2: Slurm ${NEWER[*]} shared"
  newer shared "" "$@"
  wait_newer
  for v in "${NEWER[@]}"; do
    echo "=================== Slurm $v: ${SLURM_FACING[*]#tests/} ==================="
    cat "$logs/$v.log" "$logs/$v-disruptive.log"
    cat "$logs/$v-disruptive.log" >>"$logs/$v.log"
  done
  # 22.05's disruptive tests (the fault matrix) last, alone on the machine: their timing needs the CPU
  phase "3: Slurm 22.05 disruptive"
  disruptive 22.05 "$@" 2>&1 | tee -a "$logs/22.05.log" || status=1
  echo "=================== per Slurm version ==================="
  for v in 22.05 "${NEWER[@]}"; do
    echo "$v: $(grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$logs/$v.log" | sed -E 's/^=+ //; s/ in [0-9.]+s.*//' \
      | paste -sd ';' - | sed 's/;/ ; then /')"
  done
else
  { shared "${DANLU_TEST_SLURM:-22.05}" "$@" || status=1; disruptive "${DANLU_TEST_SLURM:-22.05}" "$@" || status=1; }
fi
rm -rf "$logs"
exit $status
