"""danlu's callback for LightningCLI programs that do not save their state at a stop signal.

danlu lists it first in `trainer.callbacks` of the extra `--config` it writes after the program's own, and the node
agent puts this folder on the program's PYTHONPATH (the module name is danlu's own, so that it never shadows a
module of the program). It imports nothing of danlu.

At a stop signal (SIGUSR1 from the agent at the time-limit or preemption warning, or SIGTERM), it only sets a flag;
at the end of each training step the ranks agree on it (one all-reduce), and if any rank got a signal every rank
saves one full trainer checkpoint at `checkpoint` and training stops. The next start gets `--ckpt_path` from the
agent (the newest of that checkpoint and the program's own last.ckpt), which Lightning restores as usual.

Lightning destroys an NCCL process group at exit, not a gloo one. torch may then abort a rank while the interpreter
finalizes ("terminate called without an active exception"), after training went well. So the callback destroys a
gloo world at exit itself.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import time
from types import FrameType
from typing import Any, List, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback


def gloo_world() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_backend() == "gloo"


def destroy_world() -> None:
    """At exit, while the interpreter is whole: gloo's threads then end before it finalizes."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class KeepProgress(Callback):
    def __init__(self, checkpoint: str, resume_dirs: Optional[List[str]] = None) -> None:
        self.checkpoint = checkpoint
        self.resume_dirs = list(resume_dirs or [])  # read by the agent: where the program's last.ckpt may be
        self.signum = 0
        self._reported = False
        self._previous: Any = None
        self._destroys_world = False

    def _handler(self, signum: int, _frame: Optional[FrameType]) -> None:
        self.signum = self.signum or signum

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if gloo_world() and not self._destroys_world:
            self._destroys_world = True
            atexit.register(destroy_world)
        # after Lightning's own SIGTERM handler (Trainer._run): a flag here, the save at an agreed step
        self._previous = signal.signal(signal.SIGUSR1, self._handler)
        signal.signal(signal.SIGTERM, self._handler)
        if trainer.ckpt_path:
            print(
                f"danlu: resumed from checkpoint step={trainer.global_step} rank={trainer.global_rank} "
                f"({trainer.ckpt_path})",
                flush=True,
            )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # training is over: the agent sees the handler put back and treats a late warning as the program finishing
        if self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)

    def _report(self, trainer: pl.Trainer) -> None:
        """Each rank says once when a signal reached it itself (before the ranks agree, and after: the agreement may
        end while this rank waited in it, its own signal just arrived)."""
        if self.signum and not self._reported:
            self._reported = True
            print(f"danlu: signal {signal.Signals(self.signum).name} reached rank={trainer.global_rank}", flush=True)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._report(trainer)
        got = torch.tensor([self.signum], dtype=torch.int64, device=trainer.strategy.root_device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(got, op=torch.distributed.ReduceOp.MAX)
        if not got.item() or trainer.should_stop:
            return
        partial = f"{self.checkpoint}.partial"
        self._report(trainer)
        trainer.save_checkpoint(partial)  # every rank takes part; rank 0 writes, then all wait for it
        if trainer.is_global_zero:
            os.replace(partial, self.checkpoint)
            note = {"step": trainer.global_step, "epoch": trainer.current_epoch, "saved": time.time()}
            with open(f"{self.checkpoint}.json.partial", "w") as f:
                json.dump(note, f)
            os.replace(f"{self.checkpoint}.json.partial", f"{self.checkpoint}.json")
            name = signal.Signals(int(got.item())).name
            print(
                f"danlu: received signal {name} at step={trainer.global_step}; checkpoint saved to {self.checkpoint}; "
                f"stopping for the requeue",
                flush=True,
            )
        trainer.strategy.barrier("danlu-keep-progress")
        trainer.should_stop = True
