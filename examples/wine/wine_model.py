"""A plain Lightning model of one's own: an MLP on scikit-learn's wine data (178 real samples,
13 measurements, 3 cultivars; ships with scikit-learn). It never imports finesweep; the spec
beside it (sweep.yaml) sweeps it as it is."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class WineData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 32, val_fraction: float = 0.25, test_fraction: float = 0.25,
                 split_seed: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed

    def setup(self, stage: str | None = None) -> None:
        from sklearn.datasets import load_wine
        from sklearn.model_selection import train_test_split

        x, y = load_wine(return_X_y=True)
        rest_x, test_x, rest_y, test_y = train_test_split(x, y, test_size=self.test_fraction,
                                                          random_state=self.split_seed, stratify=y)
        train_x, val_x, train_y, val_y = train_test_split(
            rest_x, rest_y, test_size=self.val_fraction / (1 - self.test_fraction),
            random_state=self.split_seed, stratify=rest_y)
        mean, std = train_x.mean(0), train_x.std(0)

        def tensors(a, b):
            return TensorDataset(torch.tensor((a - mean) / std, dtype=torch.float32), torch.tensor(b))

        self.train_set, self.val_set, self.test_set = tensors(train_x, train_y), tensors(val_x, val_y), \
            tensors(test_x, test_y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=256)


class WineMLP(pl.LightningModule):
    def __init__(self, lr: float = 1e-3, hidden: int = 32, dropout: float = 0.1, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(13, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def _evaluate(self, batch, prefix: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{prefix}_loss", F.cross_entropy(logits, y))
        self.log(f"{prefix}_acc", (logits.argmax(1) == y).float().mean())

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def predict_step(self, batch, batch_idx):
        return self(batch[0])  # class scores, for ensembles

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
