"""CNN image classifier and the bundled digits data (scikit-learn's real 8x8 handwritten digits)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from finesweep.models.common import Classifier
from finesweep.models.data_sources import check_digits_data, parse_classes
from finesweep.models.tasks import DigitsDataConfig, ImageClassifierConfig
from finesweep.models.training import DataBundle
from torch import nn
from torch.nn import functional as F

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


class ImageClassifier(Classifier):
    def __init__(self, config: Mapping[str, Any], *, num_classes: int, in_channels: int,
                 image_size: int, max_epochs: int, labels: Sequence[int] = (),
                 background: float = 0.0) -> None:
        cfg = ImageClassifierConfig(**config)
        super().__init__(cfg, labels=list(labels) or list(range(num_classes)), max_epochs=max_epochs)
        self.save_hyperparameters()
        # The value of an empty pixel after normalisation: what augmentation fills in.
        self.background = background
        self.backbone, flat = build_backbone(self.cfg, in_channels, image_size)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, self.cfg.hidden_units),
            ACTIVATIONS[self.cfg.activation](),
            nn.Dropout(self.cfg.dropout),
            nn.Linear(self.cfg.hidden_units, num_classes),
        )
        self.finish_init()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def backbone_blocks(self) -> list[nn.Module]:
        """One block per convolution (conv, normalisation, activation, pooling)."""
        blocks: list[nn.Module] = []
        for layer in self.backbone:
            if isinstance(layer, nn.Conv2d):
                blocks.append(nn.Sequential())
            blocks[-1].append(layer)
        return blocks

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """Random shift (whole pixels), rotation and Gaussian noise; identity at the defaults."""
        cfg = self.cfg
        if cfg.aug_shift or cfg.aug_rotation:
            n, _, height, width = images.shape
            angle = (torch.rand(n, device=images.device) * 2 - 1) * math.radians(cfg.aug_rotation)
            shift = torch.randint(-cfg.aug_shift, cfg.aug_shift + 1, (n, 2), device=images.device)
            cos, sin = torch.cos(angle), torch.sin(angle)
            theta = torch.stack([
                torch.stack([cos, -sin, shift[:, 0] * 2.0 / width], dim=1),
                torch.stack([sin, cos, shift[:, 1] * 2.0 / height], dim=1),
            ], dim=1)
            grid = F.affine_grid(theta, list(images.shape), align_corners=False)
            # Sampled around the background so pixels moved in from outside are empty paper.
            images = F.grid_sample(images - self.background, grid, align_corners=False) + self.background
        if cfg.aug_noise:
            images = images + cfg.aug_noise * torch.randn_like(images)
        return images


@functools.lru_cache(maxsize=4)
def load_digits_split(val_fraction: float, test_fraction: float, split_seed: int,
                      classes: str = "0-9", train_per_class: int = 0) -> DataBundle:
    """Stratified train/val/test split of the digits, normalised with train statistics only.

    ``classes`` keeps a subset of the digits (labels become 0..k-1, the digits themselves are
    in ``info['labels']``); ``train_per_class`` shrinks the training split only, so val and
    test stay as reliable as before. Cached per process: a reused trial worker builds the
    tensors once for the whole sweep.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    kept = parse_classes(classes)
    digits = load_digits()
    images = digits.images.astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    mask = np.isin(labels, kept)
    images, labels = images[mask], np.searchsorted(kept, labels[mask]).astype(np.int64)
    rest_x, test_x, rest_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, random_state=split_seed, stratify=labels)
    train_x, val_x, train_y, val_y = train_test_split(
        rest_x, rest_y, test_size=val_fraction / (1.0 - test_fraction),
        random_state=split_seed, stratify=rest_y)
    if train_per_class:
        keep = np.concatenate([np.flatnonzero(train_y == c)[:train_per_class] for c in range(len(kept))])
        train_x, train_y = train_x[np.sort(keep)], train_y[np.sort(keep)]
    mean, std = float(train_x.mean()), float(train_x.std())

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy((x - mean) / std), torch.from_numpy(y)

    return DataBundle(
        train=tensors(train_x, train_y), val=tensors(val_x, val_y), test=tensors(test_x, test_y),
        info={"num_classes": len(kept), "in_channels": 1, "image_size": 8, "labels": tuple(kept),
              "background": -mean / std},
    )


def load_data(data: Mapping[str, Any]) -> DataBundle:
    cfg = DigitsDataConfig(**data)
    return load_digits_split(cfg.val_fraction, cfg.test_fraction, cfg.split_seed, cfg.classes,
                             cfg.train_per_class)


def check_data(data: Mapping[str, Any]) -> str | None:
    """Why this data cannot be loaded (a message for the user), or None."""
    return check_digits_data(data)


def build_model(config: Mapping[str, Any], bundle: DataBundle, max_epochs: int) -> ImageClassifier:
    return ImageClassifier(dict(config), max_epochs=max_epochs, **bundle.info)
