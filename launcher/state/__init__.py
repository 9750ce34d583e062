"""The state of a run: Slurm's state names (names), how an attempt's state is reconciled from sacct, squeue
and the run's result file (reconcile), and why a run ended (reasons). Every command that shows or changes
a run's state goes through reconcile."""
