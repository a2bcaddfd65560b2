"""A classifier with a choice of encoder: the nested-class pattern of LightningCLI configs.

``DigitClassifier(encoder: nn.Module, ...)`` takes its encoder as an argument, so a config
names it as ``{class_path, init_args}`` inside the model's own ``init_args``; ``ConvEncoder``
and ``MLPEncoder`` both take a ``width`` and each has arguments of its own. The data are
scikit-learn's handwritten digits (8x8 real images, shipped with scikit-learn, no download);
``classes_file`` names the digits to keep, one per line. Metrics are logged under slash names
(``train/loss``, ``val/acc``). Plain Lightning: it never imports finesweep, and sweep.yaml
beside it sweeps it as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class ConvEncoder(nn.Module):
    """``depth`` 3x3 convolutions of ``width`` channels, then global average pooling."""

    def __init__(self, width: int = 16, depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(depth):
            layers += [nn.Conv2d(1 if index == 0 else width, width, 3, padding=1), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class MLPEncoder(nn.Module):
    """The flattened image through one hidden layer of ``width`` units."""

    def __init__(self, width: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Dropout(dropout))
        self.out_features = width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class DigitsImages(pl.LightningDataModule):
    def __init__(self, classes_file: str, batch_size: int = 64, val_fraction: float = 0.2,
                 test_fraction: float = 0.2, split_seed: int = 0) -> None:
        super().__init__()
        # Read here, not in setup: a missing or wrong file fails as the DataModule is built.
        self.classes = sorted({int(line) for line in Path(classes_file).read_text().split() if line.strip()})
        self.batch_size, self.split_seed = batch_size, split_seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def setup(self, stage: str | None = None) -> None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        images, labels = load_digits(return_X_y=True)
        keep = [i for i, label in enumerate(labels) if label in self.classes]
        x = torch.tensor(images[keep] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
        y = torch.tensor([self.classes.index(label) for label in labels[keep]])
        rest, test = train_test_split(range(len(y)), test_size=self.test_fraction, random_state=self.split_seed,
                                      stratify=y)
        train, val = train_test_split(rest, test_size=self.val_fraction / (1 - self.test_fraction),
                                      random_state=self.split_seed, stratify=y[rest])
        self.sets = [TensorDataset(x[list(part)], y[list(part)]) for part in (train, val, test)]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.sets[0], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.sets[1], batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.sets[2], batch_size=256)

    def summary(self) -> str:
        if not hasattr(self, "sets"):
            self.setup()
        sizes = ", ".join(f"{name} {len(part)}" for name, part in zip(("train", "val", "test"), self.sets, strict=True))
        return f"scikit-learn digits {self.classes} (real 8x8 images); {sizes}"


class DigitClassifier(pl.LightningModule):
    def __init__(self, encoder: nn.Module, num_classes: int = 10, optimizer: Literal["adam", "sgd"] = "adam",
                 lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0,
                 init_from: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])  # the encoder is saved with the weights
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_features, num_classes)
        if init_from is not None:  # weights of an earlier run of the same architecture
            self.load_state_dict(torch.load(init_from, map_location="cpu", weights_only=True))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return loss

    def _evaluate(self, batch, split: str) -> None:
        images, labels = batch
        logits = self(images)
        self.log(f"{split}/loss", F.cross_entropy(logits, labels))
        self.log(f"{split}/acc", (logits.argmax(1) == labels).float().mean())

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def predict_step(self, batch, batch_idx):
        return self(batch[0])  # class scores (logits), for ensembles

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        # A schedule, so LearningRateMonitor (trainer.callbacks in sweep.yaml) has a curve to log.
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs or 1))
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
