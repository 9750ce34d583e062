"""A tiny vector-quantized autoencoder (the role of upstream's IBQ model)."""

import time

import lightning as L
import torch
from torch import nn


class TinyVQ(L.LightningModule):
    def __init__(
        self,
        dim: int = 16,
        codebook_size: int = 64,
        code_dim: int = 4,
        learning_rate: float = 1e-3,
        step_seconds: float = 0.0,  # the time a real model's step takes (tests: a run that meets its time limit)
        print_steps: bool = False,  # each step's loss on stdout, as programs that print their progress do
    ):
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, code_dim))
        self.codebook = nn.Embedding(codebook_size, code_dim)
        self.decoder = nn.Sequential(nn.Linear(code_dim, 32), nn.ReLU(), nn.Linear(32, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        codes = torch.cdist(z, self.codebook.weight).argmin(dim=1)
        q = self.codebook(codes)
        return z + (q - z).detach(), z, q

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        zq, z, q = self(x)
        rec = nn.functional.mse_loss(self.decoder(zq), x)
        return rec + nn.functional.mse_loss(q, z.detach()) + 0.25 * nn.functional.mse_loss(z, q.detach())

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if self.hparams.step_seconds:
            time.sleep(self.hparams.step_seconds)
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        if self.hparams.print_steps:
            print(f"step={self.global_step + 1} loss={loss.item():.4f} rank={self.global_rank}", flush=True)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)
