"""A regression model of one's own: an MLP on scikit-learn's diabetes data (442 real patients,
10 measurements, disease progression after a year; ships with scikit-learn). It logs val_mse,
which the spec beside it minimises. No finesweep import."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class DiabetesData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 32, split_seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.split_seed = batch_size, split_seed

    def setup(self, stage: str | None = None) -> None:
        from sklearn.datasets import load_diabetes
        from sklearn.model_selection import train_test_split

        x, y = load_diabetes(return_X_y=True)
        rest_x, test_x, rest_y, test_y = train_test_split(x, y, test_size=0.2, random_state=self.split_seed)
        train_x, val_x, train_y, val_y = train_test_split(rest_x, rest_y, test_size=0.25,
                                                          random_state=self.split_seed)
        x_mean, x_std, y_mean, y_std = train_x.mean(0), train_x.std(0), train_y.mean(), train_y.std()

        def tensors(a, b):
            return TensorDataset(torch.tensor((a - x_mean) / x_std, dtype=torch.float32),
                                 torch.tensor((b - y_mean) / y_std, dtype=torch.float32))

        self.train_set, self.val_set, self.test_set = tensors(train_x, train_y), tensors(val_x, val_y), \
            tensors(test_x, test_y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=512)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=512)


class DiabetesMLP(pl.LightningModule):
    def __init__(self, lr: float = 1e-2, hidden: int = 32, layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        blocks, width = [], 10
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_mse", F.mse_loss(self(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_mse", F.mse_loss(self(x), y))
        self.log("test_mae", F.l1_loss(self(x), y))

    def predict_step(self, batch, batch_idx):
        return self(batch[0])  # one value per example: a regression output

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
