"""Plan, before anything happens: run configs in, jobs out (launch commands, scripts, array ranges and
store rows), with no side effects. `danlu submit --dry-run` prints a plan; `danlu submit` and `danlu rerun`
hand one to launcher/submit, which executes exactly it."""
