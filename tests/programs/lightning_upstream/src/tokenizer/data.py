"""Synthetic vectors under the data root (the role of upstream's ImageNet under `../data`): made once, then read."""

import os

import lightning as L
import torch
from torch.utils.data import DataLoader


class VectorData(L.LightningDataModule):
    def __init__(self, root: str = "../data", samples: int = 2048, dim: int = 16, batch_size: int = 32):
        super().__init__()
        self.root, self.samples, self.dim, self.batch_size = root, samples, dim, batch_size

    @property
    def path(self) -> str:
        return os.path.join(self.root, f"vectors-{self.samples}x{self.dim}.pt")

    def prepare_data(self) -> None:
        if not os.path.exists(self.path):
            os.makedirs(self.root, exist_ok=True)
            g = torch.Generator().manual_seed(0)
            data = torch.randn(self.samples, self.dim, generator=g)
            torch.save(data, self.path + ".tmp")
            os.replace(self.path + ".tmp", self.path)

    def setup(self, stage: str) -> None:
        data = torch.load(self.path)
        cut = self.samples * 7 // 8
        self.train, self.val = data[:cut], data[cut:]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch_size)
