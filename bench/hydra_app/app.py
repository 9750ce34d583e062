"""The hydra-submitit-launcher alternative: a trivial Hydra app swept with `-m`.

bench/run.py runs it as
    python app.py -m hydra/launcher=submitit_slurm hydra.launcher.partition=debug-4090-01 'point=range(0,N)' ...
Each point becomes one task of a submitit job array; the launcher then blocks until every task has finished
(bench/run.py holds the jobs, measures the time until Slurm has accepted them, kills it and cancels them).
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> int:
    return int(cfg.point)


if __name__ == "__main__":
    main()
