"""danlu against the alternatives, side by side, measured in one run on the project's test Slurm clusters.

`python bench/run.py` (see there) starts the test clusters (tests/cluster/up.sh 22.05 and 24.11, idempotent), then
measures

  1. scale: a 10,000-run sweep until Slurm accepted every job (danlu vs a shell loop of sbatch vs
     hydra-submitit-launcher, the last two on 1,000 runs and extrapolated, marked), `danlu status --all` with
     10,000 and 100,000 runs in the store (first look, steady) next to one raw sacct for the same jobs, and
     `danlu report` over 100 runs x 10,000 steps next to a notebook's regex loop;
  2. controller load: slurmctld RPCs counted by sdiag (bench/status_rpcs.py, bench/job_rpcs.py) per submit of a
     1,000-run sweep, per status refresh with 1,000 active runs, per minute of --watch, per 2-node job -- next to
     a shell loop, `watch squeue`, submitit's polling and a hand-written script;
  3. the submit command: one run and a 10-run sweep, and where the time goes (DANLU_TIMINGS: imports,
     composition, checks, rendering, store, pickles, sbatch), against sbatch of the same script;
  4. start-up of every command (--help, status, logs, show, cluster) next to squeue and `python -c pass`;
  5. round one's 2-node job: crash -> end of job, and submit -> first step, danlu vs a hand-written script;
  6. the code snapshot a submit freezes, on this machine's disk (no Slurm): first, unchanged and one file changed,
     next to `git archive | tar -x`, `rsync --files-from=<(git ls-files)` and `rsync --link-dest`;

and the headline rows again on the 24.11 test cluster (one table per version). The code of the commit before
this round (--before) is measured beside the final code where a finding needs a before and after. Every
measurement has its own private store and runs dir; every job submitted is cancelled. The findings at the end
of RESULTS.md are written from the numbers of the same run.

One module per section, each with a `measure(session, results, ...)`:

  sweep.py            1. the 10,000-run sweep          submit_command.py  3. the submit command
  big_store.py        1. status with a big store       startup.py         4. start-up of every command
  report_logs.py      1. report over 100 x 10,000      two_node_job.py    5. the 2-node job, watched
  controller_load.py  2. slurmctld RPCs (sdiag)        crash.py, launch.py  5. crash -> end, launch overhead
  code_freeze.py      6. the code snapshot (its repository: code_fixture.py)

and around them: cli.py (arguments, set-up, the order sections run in), session.py (the run's folders, jobs and
Slurm version; the checkout of --before), results.py (Results: what was measured), shell.py (commands, queue and
node waits), writeup.py, headlines.py and findings.py (RESULTS.md and the README's table), paths.py.
"""
