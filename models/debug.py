"""The `debug` task: a two-layer classifier on synthetic blobs that fails on request.

Each failure is real, not simulated bookkeeping: `raise` raises, `nan` poisons the loss,
`hang` stops reporting, `oom` keeps allocating until the allocator refuses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from finesweep.models.tasks import DebugConfig, DebugDataConfig
from finesweep.models.training import DataBundle
from torch import nn
from torch.nn import functional as F


class InjectedFailure(RuntimeError):
    """Raised by `fail_mode: raise`."""


class DebugClassifier(pl.LightningModule):
    def __init__(self, config: Mapping[str, Any], *, features: int, max_epochs: int) -> None:
        super().__init__()
        self.cfg = DebugConfig(**config)
        self.net = nn.Sequential(nn.Linear(features, self.cfg.hidden_units), nn.ReLU(),
                                 nn.Linear(self.cfg.hidden_units, 2))
        self.epoch_metrics: dict[str, float] = {}
        self._losses: list[float] = []
        self._val: list[torch.Tensor] = []

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def _failing_now(self, mode: str) -> bool:
        return self.cfg.fail_mode == mode and self.current_epoch + 1 == self.cfg.fail_at_epoch

    def on_train_epoch_start(self) -> None:
        if self.cfg.epoch_seconds:
            time.sleep(self.cfg.epoch_seconds)
        if self._failing_now("raise"):
            raise InjectedFailure(f"injected failure in epoch {self.cfg.fail_at_epoch}")
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
        self._losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        inputs, labels = batch
        logits = self(inputs)
        self._val.append(torch.stack([F.cross_entropy(logits, labels, reduction="sum"),
                                      (logits.argmax(1) == labels).sum().float(),
                                      torch.tensor(float(len(labels)))]))

    def on_validation_epoch_end(self) -> None:
        loss, correct, count = torch.stack(self._val).sum(0).tolist()
        self._val.clear()
        self.epoch_metrics = {"val_loss": loss / count, "val_acc": correct / count}

    def take_train_loss(self) -> float:
        mean = sum(self._losses) / max(len(self._losses), 1)
        self._losses.clear()
        return mean

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.cfg.learning_rate)


def load_data(data: Mapping[str, Any]) -> DataBundle:
    cfg = DebugDataConfig(**data)
    generator = torch.Generator().manual_seed(cfg.split_seed)
    labels = torch.randint(0, 2, (cfg.samples,), generator=generator)
    centers = torch.randn(2, cfg.features, generator=generator)
    inputs = centers[labels] + 1.5 * torch.randn(cfg.samples, cfg.features, generator=generator)
    cut_val, cut_test = int(cfg.samples * 0.6), int(cfg.samples * 0.8)
    return DataBundle(
        train=(inputs[:cut_val], labels[:cut_val]), val=(inputs[cut_val:cut_test], labels[cut_val:cut_test]),
        test=(inputs[cut_test:], labels[cut_test:]), info={"features": cfg.features},
    )


def build_model(config: Mapping[str, Any], bundle: DataBundle, max_epochs: int) -> DebugClassifier:
    return DebugClassifier(dict(config), max_epochs=max_epochs, **bundle.info)
