#!/usr/bin/env python
"""Tiny LightningCLI reference workload: a small autoencoder on synthetic data, trained with Lightning.

It is shaped like a real Lightning program on Slurm, and it is what danlu's `launch=lightning` is tested with:
  * a LightningCLI with a YAML config (`--config config.yaml`, several may be given), `trainer.devices` and
    `trainer.num_nodes` in it, every option overridable (`--trainer.max_steps=40`, `--model.lr=0.01`);
  * ModelCheckpoint monitoring `val_loss` with `save_last=True`, into `<output_dir>/checkpoints` (logs into
    `<output_dir>/lightning_logs` and/or `<output_dir>/tensorboard` as --loggers says: `--output_dir` is the
    trainer's `default_root_dir`);
  * resume from the last checkpoint on every start (`fit(ckpt_path="last")`: nothing there, a fresh start);
  * on SIGUSR1 (danlu's checkpoint signal) or SIGTERM (preemption, scancel: Slurm sends it to every process of
    the job) the ranks agree at the end of the step, save `last.ckpt` and stop: a requeue loses no step. Once
    training starts this program's SIGTERM handler replaces Lightning's, which runs a broadcast inside the
    handler and deadlocks DDP when the ranks are told a moment apart (Lightning issue #20806; seen here on
    preemption, where Slurm sends SIGTERM twice);
  * fault injection: `--model.crash_at_step=N --model.crash_rank=R` raises on one rank, `--model.hang_at_step=N
    --model.hang_rank=R` blocks one rank forever (its peers then wait in the next all-reduce);
  * one `step=N loss=... rank=R world_size=W` line per step and rank on stdout, `done steps=N` at the end.

Lightning reads the Slurm environment itself (one srun task per rank). danlu owns the requeue: the job side starts
the program with SIGUSR1 ignored, so Lightning does not install its auto-requeue handler (it leaves an existing
SIGUSR1 disposition alone: this program's, or the ignored one) and never writes `hpc_ckpt_*.ckpt` files into the
working directory.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models: one thread per rank is fastest

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from lightning.pytorch.callbacks import Callback, ModelCheckpoint  # noqa: E402
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

DIM = 16


class TinyAutoencoder(pl.LightningModule):
    def __init__(
        self,
        hidden: int = 32,
        code: int = 4,
        lr: float = 1e-2,
        sleep_per_step: float = 0.0,
        crash_at_step: int = -1,
        crash_rank: int = 0,
        hang_at_step: int = -1,
        hang_rank: int = 0,
    ) -> None:
        """
        Args:
            hidden: width of the hidden layers.
            code: size of the bottleneck.
            lr: Adam learning rate.
            sleep_per_step: sleep this many seconds per step (simulates long training).
            crash_at_step: raise RuntimeError at the start of this step (-1 = never).
            crash_rank: the rank that raises.
            hang_at_step: block forever at the start of this step (-1 = never).
            hang_rank: the rank that blocks.
        """
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.Sequential(nn.Linear(DIM, hidden), nn.Tanh(), nn.Linear(hidden, code))
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.Tanh(), nn.Linear(hidden, DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        step, rank = self.global_step + 1, self.global_rank
        h = self.hparams
        if step == h.crash_at_step and rank == h.crash_rank:
            raise RuntimeError(f"injected crash at step {step} on rank {rank}")
        if step == h.hang_at_step and rank == h.hang_rank:
            print(f"injected hang at step={step} rank={rank}", flush=True)
            while True:
                time.sleep(3600)
        (x,) = batch
        loss = F.mse_loss(self(x), x)
        self.log("train_loss", loss, prog_bar=False)
        if h.sleep_per_step > 0:
            time.sleep(h.sleep_per_step)
        sys.stdout.write(f"step={step} loss={loss.item():.5f} rank={rank} world_size={self.trainer.world_size}\n")
        sys.stdout.flush()
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        (x,) = batch
        self.log("val_loss", F.mse_loss(self(x), x), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class SyntheticData(pl.LightningDataModule):
    def __init__(self, samples: int = 4096, batch_size: int = 16, seed: int = 0) -> None:
        """
        Args:
            samples: training samples (16-dim points near a 4-dim subspace); validation has a quarter as many.
            batch_size: per-rank batch size.
            seed: data seed (the same data on every rank and every restart).
        """
        super().__init__()
        self.samples, self.batch_size, self.seed = samples, batch_size, seed

    def _points(self, n: int, seed: int) -> TensorDataset:
        g = torch.Generator().manual_seed(seed)
        basis = torch.randn(4, DIM, generator=torch.Generator().manual_seed(self.seed))
        x = torch.randn(n, 4, generator=g) @ basis + 0.05 * torch.randn(n, DIM, generator=g)
        return TensorDataset(x)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self._points(self.samples, self.seed + 1),
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._points(self.samples // 4, self.seed + 2), batch_size=self.batch_size)


class StopOnSignal(Callback):
    """The checkpoint signal (SIGUSR1) and SIGTERM only set a flag; at the end of each step the ranks agree on it
    (one all-reduce, at the same point on every rank), and if any got one all save `last.ckpt` and stop. No
    collective runs inside a signal handler."""

    def __init__(self, checkpoints: ModelCheckpoint) -> None:
        self.checkpoints = checkpoints
        self.signum = 0
        self.stopped_at: int | None = None
        self._previous = signal.signal(signal.SIGUSR1, self._handler)  # before fit: Lightning keeps it

    def _handler(self, signum: int, _frame: object) -> None:
        self.signum = self.signum or signum

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning has registered its SIGTERM handler by now (Trainer._run); it puts the original back itself
        # when fit ends (its signal connector's teardown)
        signal.signal(signal.SIGTERM, self._handler)

    def restore(self) -> None:
        """Training is over: put the previous SIGUSR1 handler back (danlu then sees the program finishing)."""
        signal.signal(signal.SIGUSR1, self._previous)

    def _report(self, trainer: pl.Trainer) -> None:
        """Each rank says when a signal reached it itself (asked before the ranks agree on stopping, and again
        after: the agreement may end while this rank waited in it, with its own signal just arrived)."""
        if self.signum and not getattr(self, "_reported", False):
            self._reported = True
            print(f"signal {signal.Signals(self.signum).name} reached rank={trainer.global_rank}", flush=True)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        self._report(trainer)
        got = torch.tensor([self.signum], dtype=torch.int64, device=trainer.strategy.root_device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(got, op=torch.distributed.ReduceOp.MAX)  # the signal any rank got
        if not got.item():
            return
        trainer.save_checkpoint(os.path.join(self.checkpoints.dirpath, "last.ckpt"))
        self._report(trainer)
        self.stopped_at = trainer.global_step
        trainer.should_stop = True
        if trainer.is_global_zero:
            name = signal.Signals(int(got.item())).name
            print(
                f"received signal {name} at step={trainer.global_step}; checkpoint saved; exiting for requeue",
                flush=True,
            )


class ReportResume(Callback):
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path:
            print(f"resumed from checkpoint step={trainer.global_step} rank={trainer.global_rank}", flush=True)


class CLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--output_dir", type=str, required=True, help="Checkpoints and logs go here.")
        parser.link_arguments("output_dir", "trainer.default_root_dir")  # logs: never the working directory
        parser.add_argument(
            "--loggers",
            type=str,
            default="csv",
            help="Comma-separated: csv (<output_dir>/lightning_logs/version_N/metrics.csv) and/or "
            "tensorboard (<output_dir>/tensorboard/version_N/events.out.tfevents.*); used when "
            "the config gives no trainer.logger.",
        )


def make_loggers(names: str, out: str) -> list:
    """The loggers --loggers names, writing under the output dir. Named, not Lightning's default: that default
    changes with what is installed (TensorBoard when tensorboard is, else CSV)."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    kinds = {
        "csv": lambda: CSVLogger(out, name="lightning_logs"),
        "tensorboard": lambda: TensorBoardLogger(out, name="tensorboard", default_hp_metric=False),
    }
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in kinds]
    if unknown:
        raise SystemExit(f"error: --loggers: unknown logger {unknown[0]!r} (csv, tensorboard)")
    return [kinds[n]() for n in wanted]


def main(argv: list[str] | None = None) -> int:
    cli = CLI(
        TinyAutoencoder,
        SyntheticData,
        run=False,
        args=argv,
        save_config_callback=None,
        trainer_defaults={"enable_progress_bar": False, "enable_model_summary": False},
    )
    trainer, out = cli.trainer, cli.config["output_dir"]
    checkpoints = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    if checkpoints is None:
        raise SystemExit("error: the config must configure a ModelCheckpoint (trainer.callbacks)")
    if checkpoints.dirpath is None:  # the run's output dir, never the working directory or a logger's version dir
        checkpoints.dirpath = os.path.join(out, "checkpoints")
    if cli.config["trainer"].get("logger") in (None, True):
        trainer.loggers = make_loggers(cli.config["loggers"], out)
    stop = StopOnSignal(checkpoints)
    trainer.callbacks += [stop, ReportResume()]
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    print(
        f"rank={trainer.global_rank} world_size={trainer.world_size} local_rank={trainer.local_rank} "
        f"node={node} pid={os.getpid()}",
        flush=True,
    )
    trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path="last")
    stop.restore()
    if trainer.is_global_zero and stop.stopped_at is None:
        print(f"done steps={trainer.global_step}", flush=True)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Lightning leaves a gloo group to the interpreter's finalization, where torch may abort the rank
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
