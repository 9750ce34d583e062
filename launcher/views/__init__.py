"""What the researcher sees: the squeue-style table (table), the live view (watch), a run's logs (logs),
everything about one run (show) and the cluster's partitions and GPUs (cluster). Views read the store,
the run layout and Slurm; they never write run states (launcher/state does)."""
