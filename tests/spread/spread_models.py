"""A deterministic model for the multi-worker tests: a linear regression trained by plain SGD,
no dropout, no batch norm, an unshuffled loader, so 2 workers at batch b take the same steps as 1
worker at batch 2b (DDP averages the two halves' gradients).

Lightning gives each rank a DistributedSampler that shuffles the training split (always: its
``_process_dataloader``), seeded with the run's seed and the epoch: rank r takes positions r, r+2,
... of one permutation. ``order_seed`` lets one worker read the split in that same permutation,
so its batch k holds exactly the two ranks' batch k together."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class LinearNet(pl.LightningModule):
    def __init__(self, lr: float = 0.05, features: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y), sync_dist=True)

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch[0]).squeeze(-1)  # one regression output per example, for `ensemble`

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class LinearData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 8, samples: int = 64, features: int = 8,
                 order_seed: int | None = None) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(samples, features, generator=generator)
        self.y = self.x @ torch.randn(features, 1, generator=generator) + 0.1 * torch.randn(samples, 1,
                                                                                             generator=generator)
        self.batch_size = batch_size
        self.order_seed = order_seed

    def train_dataloader(self) -> DataLoader:
        data = TensorDataset(self.x, self.y)
        if self.order_seed is None:
            return DataLoader(data, batch_size=self.batch_size, shuffle=False)
        # torch's DistributedSampler at epoch 0: randperm(len) from a generator seeded with its seed.
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.order_seed)).tolist()
        return DataLoader(data, batch_size=self.batch_size, sampler=order)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size, shuffle=False)
