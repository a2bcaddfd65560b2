"""Classes for the LightningCLI parity table (tests/test_lightning_parity.py): a module with
a nested encoder argument, a class choice, a Literal, Optional, unions, dicts, lists of
classes and path arguments, and a DataModule, all plain Lightning. Their ``__init__`` only
stores what it is given, so each config's verdict is the parser's, not the class's own code."""

from __future__ import annotations

from typing import Literal, Union

import pytorch_lightning as pl
import torch
from jsonargparse.typing import Path_fr
from torch import nn


class ConvEncoder(nn.Module):
    def __init__(self, width: int = 8, depth: int = 2, kernel: Literal[3, 5] = 3):
        super().__init__()
        self.width, self.depth, self.kernel = width, depth, kernel


class MLPEncoder(nn.Module):
    def __init__(self, width: int = 16, dropout: float = 0.1, activation: Literal["relu", "tanh"] = "relu",
                 bias: bool = True):
        super().__init__()
        self.width, self.dropout = width, dropout


class StackEncoder(nn.Module):
    """An encoder of encoders: nesting two and three classes deep."""

    def __init__(self, block: nn.Module, repeats: int = 2):
        super().__init__()
        self.block, self.repeats = block, repeats


class SizedEncoder(nn.Module):
    """A nested class with a required argument."""

    def __init__(self, width: int, scale: float = 1.0):
        super().__init__()
        self.width = width


class ParityNet(pl.LightningModule):
    def __init__(self, encoder: nn.Module, optimizer: Literal["adam", "sgd"] = "adam", lr: float = 1.0e-3,
                 momentum: float = 0.9, head: nn.Module | None = None, hidden: Union[int, list[int]] = 16,
                 options: dict[str, float] | None = None, init_from: str | None = None,
                 weights: Path_fr | None = None, tags: list[str] | None = None):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.layer = nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class NeedsClasses(pl.LightningModule):
    """A module with a required plain argument."""

    def __init__(self, n_classes: int, lr: float = 1.0e-3, scale: float | None = None):
        super().__init__()
        self.n_classes = n_classes


class ParityData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 32, split: tuple[float, float] = (0.8, 0.2),
                 transforms: list[nn.Module] | None = None, mode: Literal["train", "full"] = "train",
                 seed: int = 0, data_file: str | None = None):
        super().__init__()
        self.batch_size = batch_size


class NotAModule:
    """Neither a LightningModule nor an nn.Module."""

    def __init__(self, width: int = 3):
        self.width = width
