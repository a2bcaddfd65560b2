"""A synthetic scripted task for the scale benchmark (benchmarks/scale.py): a trial logs a
learning curve epoch by epoch, sleeping ``epoch_seconds`` per epoch, training nothing (a
:class:`~benchmarks.scripted.ScriptedModule`, run by Lightning as any user model).

The curve is a smooth function of the parameters (a shifted quadratic bowl in log learning
rate, width and dropout, plus a penalty for sgd) approached exponentially over the epochs,
plus seeded noise, so model-based samplers have something to learn and ASHA has curves to
compare::

    model: {class_path: benchmarks.scale_task.CurveModel}
    data: {class_path: benchmarks.scale_task.CurveData, init_args: {epoch_seconds: 0.5}}
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Literal

from benchmarks.scripted import ScriptedData, ScriptedModule


class CurveData(ScriptedData):
    """How long a simulated epoch takes."""

    def __init__(self, epoch_seconds: float = 0.5, noise: float = 0.02) -> None:
        """
        Args:
            epoch_seconds: seconds each simulated epoch sleeps
            noise: standard deviation of the per-epoch noise on the loss
        """
        super().__init__()
        self.epoch_seconds, self.noise = epoch_seconds, noise


class CurveModel(ScriptedModule):
    """Final loss = a smooth bowl over the parameters; each epoch closes part of the gap."""

    def __init__(self, lr: float = 1e-3, width: int = 64, dropout: float = 0.1,
                 optimizer: Literal["adam", "sgd"] = "adam") -> None:
        """
        Args:
            lr: learning rate (the bowl's centre is at 3e-3)
            width: hidden units (centre 128)
            dropout: dropout rate (centre 0.2)
            optimizer: adam or sgd (sgd ends 0.05 higher)
        """
        super().__init__()
        self.lr, self.width, self.dropout, self.optimizer = lr, width, dropout, optimizer
        self.rng = random.Random(self.seed)

    def final_loss(self) -> float:
        return (0.1 + 0.08 * (math.log10(self.lr) - math.log10(3e-3)) ** 2
                + 0.3 * (math.log2(self.width) - 7.0) ** 2 / 9.0 + (self.dropout - 0.2) ** 2
                + (0.05 if self.optimizer == "sgd" else 0.0))

    def _data(self) -> CurveData:
        data = self.trainer.datamodule
        assert isinstance(data, CurveData)
        return data

    def epoch_seconds(self, epoch: int) -> float:
        return self._data().epoch_seconds

    def epoch_metrics(self, epoch: int) -> Mapping[str, float]:
        final, start = self.final_loss(), 2.5
        speed = 0.6 + 0.4 * min(1.0, self.lr / 3e-3)  # A small learning rate learns slowly.
        loss = final + (start - final) * math.exp(-speed * epoch) + self.rng.gauss(0.0, self._data().noise)
        return {"val_loss": loss, "val_acc": 1.0 / (1.0 + loss)}
