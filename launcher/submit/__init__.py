"""Schedule: execute a plan (launcher/plan). Folders and scripts written, node agents pickled, one sbatch
per job (or one local process), each job recorded the moment Slurm accepts it; crash recovery finds the
jobs of a danlu that died in between (recovery)."""
