"""CNN image classifier and the bundled digits data (scikit-learn's real 8x8 handwritten digits)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
import torch
from finesweep.models.common import Classifier, Splits, TensorDataModule
from finesweep.models.components import Range
from finesweep.models.data_sources import parse_classes
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _normalization(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    return nn.Identity()


def build_backbone(cfg: ImageClassifier, in_channels: int, image_size: int) -> tuple[nn.Sequential, int]:
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
    """A small CNN (convolution blocks, a dense layer, a linear head) for images of any size."""

    def __init__(
        self,
        conv_layers: Annotated[int, Range(1, 6)] = 2,
        channels: Annotated[int, Range(1)] = 32,
        kernel_size: Annotated[int, Range(1, 7)] = 3,
        normalization: Literal["none", "batch", "group"] = "batch",
        activation: Literal["relu", "gelu", "silu", "tanh"] = "relu",
        hidden_units: Annotated[int, Range(1)] = 128,
        dropout: Annotated[float, Range(0.0, 0.95)] = 0.1,
        aug_shift: Annotated[int, Range(0, 3)] = 0,
        aug_rotation: Annotated[float, Range(0.0, 45.0)] = 0.0,
        aug_noise: Annotated[float, Range(0.0, 2.0)] = 0.0,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            conv_layers: convolution blocks
            channels: width of the first block; doubles per block
            kernel_size: odd convolution kernel size
            normalization: normalization after each convolution
            activation: non-linearity
            hidden_units: width of the dense layer before the head
            dropout: dropout before the head
            aug_shift: random shift of up to this many pixels (training batches only)
            aug_rotation: random rotation of up to this many degrees (training batches only)
            aug_noise: std of Gaussian noise added, in normalised pixel units (training batches only)
            **kwargs: the optimizer and fine-tuning settings of :class:`Classifier`
        """
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.conv_layers, self.channels, self.kernel_size = conv_layers, channels, kernel_size
        self.normalization, self.activation, self.hidden_units = normalization, activation, hidden_units
        self.dropout, self.aug_shift, self.aug_rotation, self.aug_noise = dropout, aug_shift, aug_rotation, aug_noise
        # The value of an empty pixel after normalisation: what augmentation fills in.
        self.background = 0.0

    def build(self, info: Mapping[str, Any]) -> None:
        self.background = float(info.get("background", 0.0))
        self.backbone, flat = build_backbone(self, int(info["in_channels"]), int(info["image_size"]))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, self.hidden_units),
            ACTIVATIONS[self.activation](),
            nn.Dropout(self.dropout),
            nn.Linear(self.hidden_units, len(info["labels"])),
        )

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
        cfg = self
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
                      classes: str = "0-9", train_per_class: int = 0) -> Splits:
    """Stratified train/val/test split of the digits, normalised with train statistics only.

    ``classes`` keeps a subset of the digits (labels become 0..k-1, the digits themselves are
    in ``info['labels']``); ``train_per_class`` shrinks the training split only, so val and
    test stay as reliable as before. Cached per process: a reused trial worker builds the
    tensors once for the whole sweep.
    """
    # Imported here: scikit-learn is slow to import.
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

    return Splits(
        train=tensors(train_x, train_y), val=tensors(val_x, val_y), test=tensors(test_x, test_y),
        info={"in_channels": 1, "image_size": 8, "labels": tuple(kept), "background": -mean / std},
        summary=f"scikit-learn digits (real 8x8 images), digits {classes}",
    )


class DigitsData(TensorDataModule):
    """scikit-learn's 8x8 handwritten digits (1,797 real images; ships with the package)."""

    def __init__(
        self,
        val_fraction: Annotated[float, Range(0.05, 0.5)] = 0.2,
        test_fraction: Annotated[float, Range(0.05, 0.5)] = 0.2,
        split_seed: int = 0,
        classes: str = "0-9",
        train_per_class: Annotated[int, Range(0)] = 0,
        batch_size: Annotated[int, Range(1)] = 64,
        dataset: Literal["digits"] = "digits",
    ) -> None:
        """
        Args:
            val_fraction: share of images held out for validation
            test_fraction: share held out for the final test only
            split_seed: seed of the train/val/test split; fixed, so val/test are the same in every
                trial and retraining and the test split never leaks into the search
            classes: digits kept, e.g. 0-4, 5-9 or 1,3,7 (labels stay the digits themselves)
            train_per_class: training images kept per digit (0: all): a small target set for fine-tuning
            batch_size: examples per optimizer step
            dataset: bundled dataset name
        """
        super().__init__(batch_size=batch_size)
        parse_classes(classes)  # A wrong `classes` is an error now, not in every trial.
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.classes, self.train_per_class = classes, train_per_class

    def load_splits(self) -> Splits:
        return load_digits_split(self.val_fraction, self.test_fraction, self.split_seed, self.classes,
                                 self.train_per_class)
