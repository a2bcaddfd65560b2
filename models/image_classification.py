"""CNN image classifier and the bundled digits data (scikit-learn's real 8x8 handwritten digits)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F

from models.tasks import DigitsDataConfig, ImageClassifierConfig
from models.training import DataBundle

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _normalization(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    return nn.Identity()


def build_backbone(cfg: ImageClassifierConfig, in_channels: int, image_size: int) -> tuple[nn.Sequential, int]:
    """Convolution blocks; returns the module and the size of its flattened output."""
    layers: list[nn.Module] = []
    channels, size = in_channels, image_size
    for block in range(cfg.conv_layers):
        out = cfg.channels * 2 ** min(block, 3)
        layers += [
            nn.Conv2d(channels, out, cfg.kernel_size, padding=cfg.kernel_size // 2),
            _normalization(cfg.normalization, out),
            ACTIVATIONS[cfg.activation](),
        ]
        # Digits are only 8x8: pool while at least 4x4 remains, so deep nets keep a 2x2 map.
        if size >= 4:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        channels = out
    return nn.Sequential(*layers), channels * size * size


class ImageClassifier(pl.LightningModule):
    def __init__(self, config: Mapping[str, Any], *, num_classes: int, in_channels: int,
                 image_size: int, max_epochs: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = ImageClassifierConfig(**config)
        self.max_epochs = max_epochs
        self.backbone, flat = build_backbone(self.cfg, in_channels, image_size)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, self.cfg.hidden_units),
            ACTIVATIONS[self.cfg.activation](),
            nn.Dropout(self.cfg.dropout),
            nn.Linear(self.cfg.hidden_units, num_classes),
        )
        self.epoch_metrics: dict[str, float] = {}
        self._train_loss_sum = torch.zeros(())
        self._train_batches = 0
        self._val_sums = torch.zeros(3)  # loss sum, correct, count

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self(images), labels, label_smoothing=self.cfg.label_smoothing)
        # Summed here rather than with self.log: epoch means are needed before Lightning
        # reduces its logged values, and avoiding the logger keeps trials cheap.
        self._train_loss_sum += loss.detach().cpu()
        self._train_batches += 1
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        correct = (logits.argmax(dim=1) == labels).sum()
        self._val_sums += torch.stack([loss.detach().cpu(), correct.cpu().float(),
                                       torch.tensor(float(len(labels)))])

    def on_validation_epoch_end(self) -> None:
        loss, correct, count = self._val_sums.tolist()
        self._val_sums.zero_()
        if count:
            self.epoch_metrics = {"val_loss": loss / count, "val_acc": correct / count}

    def take_train_loss(self) -> float:
        mean = float(self._train_loss_sum) / max(self._train_batches, 1)
        self._train_loss_sum.zero_()
        self._train_batches = 0
        return mean

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        if cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=cfg.learning_rate,
                                        momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "adamw":
            optimizer = torch.optim.AdamW(self.parameters(), lr=cfg.learning_rate,
                                          weight_decay=cfg.weight_decay)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=cfg.learning_rate,
                                         weight_decay=cfg.weight_decay)
        if cfg.lr_schedule == "constant":
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": schedule}


@functools.lru_cache(maxsize=4)
def load_digits_split(val_fraction: float, test_fraction: float, split_seed: int) -> DataBundle:
    """Stratified train/val/test split of the digits, normalised with train statistics only.

    Cached per process: a reused trial worker builds the tensors once for the whole sweep.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    rest_x, test_x, rest_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, random_state=split_seed, stratify=labels)
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=val_fraction / (1.0 - test_fraction),
        random_state=split_seed, stratify=rest_y)
    mean, std = float(train_x.mean()), float(train_x.std())

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy((x - mean) / std), torch.from_numpy(y)

    return DataBundle(
        train=tensors(train_x, train_y), val=tensors(val_x, val_y), test=tensors(test_x, test_y),
        info={"num_classes": 10, "in_channels": 1, "image_size": 8},
    )


def load_data(data: Mapping[str, Any]) -> DataBundle:
    cfg = DigitsDataConfig(**data)
    return load_digits_split(cfg.val_fraction, cfg.test_fraction, cfg.split_seed)


def build_model(config: Mapping[str, Any], bundle: DataBundle, max_epochs: int) -> ImageClassifier:
    return ImageClassifier(dict(config), max_epochs=max_epochs, **bundle.info)
