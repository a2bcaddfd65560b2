"""The `debug` task: a two-layer classifier on synthetic blobs that fails on request.

finesweep's BoringModel: it trains in milliseconds, for smoke-testing a cluster and for the
failure tests. Each failure is real, not simulated bookkeeping: `raise` raises, `nan` poisons
the loss, `hang` stops reporting, `oom` keeps allocating until the allocator refuses.
"""

from __future__ import annotations

import functools
import time
from typing import Annotated, Literal

import pytorch_lightning as pl
import torch
from finesweep.models.common import Splits, TensorDataModule
from finesweep.models.components import Range
from torch import nn
from torch.nn import functional as F


class InjectedFailure(RuntimeError):
    """Raised by `fail_mode: raise`."""


class DebugClassifier(pl.LightningModule):
    def __init__(
        self,
        learning_rate: Annotated[float, Range(0.0)] = 0.05,
        hidden_units: Annotated[int, Range(1)] = 16,
        features: Annotated[int, Range(1)] = 8,
        fail_mode: Literal["none", "raise", "nan", "hang", "oom"] = "none",
        fail_at_epoch: Annotated[int, Range(1)] = 1,
        epoch_seconds: Annotated[float, Range(0.0)] = 0.0,
    ) -> None:
        """
        Args:
            learning_rate: learning rate
            hidden_units: hidden layer width
            features: input dimensions (the data's `features`)
            fail_mode: what goes wrong at fail_at_epoch
            fail_at_epoch: the epoch in which fail_mode strikes
            epoch_seconds: extra seconds each epoch sleeps (keeps trials running for the kill tests)
        """
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(features, hidden_units), nn.ReLU(), nn.Linear(hidden_units, 2))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def _failing_now(self, mode: str) -> bool:
        return self.hparams.fail_mode == mode and self.current_epoch + 1 == self.hparams.fail_at_epoch

    def on_train_epoch_start(self) -> None:
        if self.hparams.epoch_seconds:
            time.sleep(self.hparams.epoch_seconds)
        if self._failing_now("raise"):
            raise InjectedFailure(f"injected failure in epoch {self.hparams.fail_at_epoch}")
        if self._failing_now("hang"):
            while True:  # Never reports again: only the trial watchdog ends this.
                time.sleep(1.0)
        if self._failing_now("oom"):
            hoard = []
            while True:  # Grows until the allocator refuses (a memory cap, or the machine).
                hoard.append(torch.ones(64 * 1024 * 1024, dtype=torch.uint8))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, labels = batch
        loss = F.cross_entropy(self(inputs), labels)
        if self._failing_now("nan"):
            loss = loss * float("nan")
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> None:
        inputs, labels = batch
        logits = self(inputs)
        self.log(f"{prefix}_loss", F.cross_entropy(logits, labels), batch_size=len(labels))
        self.log(f"{prefix}_acc", (logits.argmax(1) == labels).float().mean(), batch_size=len(labels))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int = 0) -> torch.Tensor:
        return self(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)


@functools.lru_cache(maxsize=4)
def _blobs(samples: int, features: int, split_seed: int) -> Splits:
    generator = torch.Generator().manual_seed(split_seed)
    labels = torch.randint(0, 2, (samples,), generator=generator)
    centers = torch.randn(2, features, generator=generator)
    inputs = centers[labels] + 1.5 * torch.randn(samples, features, generator=generator)
    cut_val, cut_test = int(samples * 0.6), int(samples * 0.8)
    return Splits(train=(inputs[:cut_val], labels[:cut_val]), val=(inputs[cut_val:cut_test], labels[cut_val:cut_test]),
                  test=(inputs[cut_test:], labels[cut_test:]), info={"labels": (0, 1), "features": features},
                  summary=f"two Gaussian blobs (synthetic), {features} features")


class DebugData(TensorDataModule):
    """Two Gaussian blobs (synthetic)."""

    def __init__(self, samples: Annotated[int, Range(30)] = 256, features: Annotated[int, Range(1)] = 8,
                 split_seed: int = 0, batch_size: Annotated[int, Range(1)] = 32) -> None:
        """
        Args:
            samples: examples in all splits together
            features: input dimensions
            split_seed: seed of the data and its split
            batch_size: examples per training step
        """
        super().__init__(batch_size=batch_size)
        self.samples, self.features, self.split_seed = samples, features, split_seed

    def load_splits(self) -> Splits:
        return _blobs(self.samples, self.features, self.split_seed)
