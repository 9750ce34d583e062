"""A LightningCLI tokenizer trainer shaped like SEED-Voken's main.py (IBQ), with nothing of danlu's in it:

    python main.py fit --config configs/IBQ/gpu/imagenet_ibqgan_1024.yaml

as upstream runs it from the repository root: its own `src.*` package, data under `../data`, a config with
`ckpt_path: null`, a ModelCheckpoint with a fixed `dirpath: ../ckpt/<name>` and a TensorBoardLogger with
`save_dir: ../logs` and a fixed `version` (every run of the config writes into the same folders), no callback that
saves at a signal and no resume. Small enough to train on the CPU in seconds.
"""

import os
import sys

sys.path.append(os.getcwd())

from lightning.pytorch.cli import LightningCLI  # noqa: E402


def main() -> None:
    LightningCLI(save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    main()
