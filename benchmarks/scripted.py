"""Scripted tasks for benchmarks: a LightningModule that trains nothing and logs, each epoch,
metrics it computes or looks up (a recorded learning curve, a synthetic one).

Such a task goes through the same path as any user model (``model.class_path`` in a spec,
Lightning's ``Trainer.fit`` in the trial, the best-epoch tracking, checkpoints and reports):
finesweep has no special case for it. Each epoch is one training batch, which sleeps for as
long as the scripted epoch should take, and one validation batch, which logs the epoch's
metrics. The module has no parameters and no optimizer (manual optimization, nothing stepped).

The run's seed is the one Lightning was seeded with before the module was built
(``seed_everything(run.seed)`` in ``models.training.build``): ``torch.initial_seed()``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class ScriptedModule(pl.LightningModule):
    """Subclasses implement :meth:`epoch_metrics`; :meth:`epoch_seconds` and :meth:`check` are optional."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False  # Nothing to optimize: no parameters.
        self.seed = torch.initial_seed()

    def epoch_metrics(self, epoch: int) -> Mapping[str, float]:
        """What the model logs at the end of ``epoch`` (1, 2, ...); raising fails the trial as a
        raising training step would."""
        raise NotImplementedError

    def epoch_seconds(self, epoch: int) -> float:
        """How long ``epoch`` takes (slept in its one training batch)."""
        return 0.0

    def check(self, max_epochs: int) -> None:
        """Refuse a budget the script cannot play (called when fitting starts)."""

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.trainer.max_epochs is not None:
            self.check(int(self.trainer.max_epochs))

    def configure_optimizers(self) -> Any:
        return None

    def training_step(self, batch: Any, batch_idx: int) -> None:
        seconds = self.epoch_seconds(self.current_epoch + 1)
        if seconds > 0:
            time.sleep(seconds)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        for name, value in self.epoch_metrics(self.current_epoch + 1).items():
            # float64: the logged value is the scripted one exactly (a float32 would round it).
            self.log(name, torch.tensor(float(value), dtype=torch.float64), on_epoch=True, batch_size=1)


class ScriptedData(pl.LightningDataModule):
    """One placeholder batch per split: an epoch of a :class:`ScriptedModule` is one step."""

    @staticmethod
    def _one_batch() -> DataLoader:
        return DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)

    def train_dataloader(self) -> DataLoader:
        return self._one_batch()

    def val_dataloader(self) -> DataLoader:
        return self._one_batch()
