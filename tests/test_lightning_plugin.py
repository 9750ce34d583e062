"""danlu's Lightning callback in a real two-process DDP fit on the CPU (gloo), as the node agent runs it: on the
program's PYTHONPATH, nothing of danlu's imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).resolve().parent.parent / "launcher" / "job" / "lightning_plugin"

# a program that checks, at its very last exit handler, whether its process group was left for the interpreter's
# finalization (handlers run last registered first: this one is registered before the fit)
PROGRAM = """
import atexit, sys
import torch
import lightning.pytorch as pl
from danlu_lightning import KeepProgress


@atexit.register
def say_what_is_left():
    print(f"group left at exit: {torch.distributed.is_initialized()}", flush=True)


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, _index):
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(16, 4), batch_size=4)


trainer = pl.Trainer(
    accelerator="cpu", devices=2, strategy="ddp", max_steps=2, logger=False, enable_checkpointing=False,
    enable_progress_bar=False, enable_model_summary=False, callbacks=[KeepProgress(sys.argv[1])],
)
trainer.fit(Tiny())
"""


def test_a_gloo_world_is_destroyed_at_exit_before_the_interpreter_finalizes(tmp_path):
    """Lightning leaves a gloo process group to finalization, where torch may abort a rank whose training went well."""
    program = tmp_path / "train.py"
    program.write_text(PROGRAM)
    env = {**os.environ, "PYTHONPATH": str(PLUGIN), "MASTER_ADDR": "127.0.0.1"}
    done = subprocess.run(
        [sys.executable, str(program), str(tmp_path / "stop.ckpt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stdout.splitlines() if line.startswith("group left at exit")]
    assert said == ["group left at exit: False"] * 2, (done.stdout[-2000:], done.stderr[-2000:])
