"""A synthetic simulated task for the scale benchmark (benchmarks/scale.py): a trial reports a
learning curve epoch by epoch, sleeping ``epoch_seconds`` per epoch, and imports neither torch
nor Lightning (a :class:`~finesweep.models.simulation.SimulatedModel`).

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
import time
from collections.abc import Iterator, Mapping
from typing import Literal

from finesweep.models.simulation import SimulatedData, SimulatedModel


class CurveData(SimulatedData):
    """How long a simulated epoch takes."""

    def __init__(self, epoch_seconds: float = 0.5, noise: float = 0.02) -> None:
        """
        Args:
            epoch_seconds: seconds each simulated epoch sleeps
            noise: standard deviation of the per-epoch noise on the loss
        """
        self.epoch_seconds, self.noise = epoch_seconds, noise


class CurveModel(SimulatedModel):
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
        self.lr, self.width, self.dropout, self.optimizer = lr, width, dropout, optimizer

    def final_loss(self) -> float:
        return (0.1 + 0.08 * (math.log10(self.lr) - math.log10(3e-3)) ** 2
                + 0.3 * (math.log2(self.width) - 7.0) ** 2 / 9.0 + (self.dropout - 0.2) ** 2
                + (0.05 if self.optimizer == "sgd" else 0.0))

    def simulate(self, data: SimulatedData, *, seed: int, max_epochs: int) -> Iterator[Mapping[str, float]]:
        assert isinstance(data, CurveData)
        rng = random.Random(seed)
        final, start = self.final_loss(), 2.5
        speed = 0.6 + 0.4 * min(1.0, self.lr / 3e-3)  # A small learning rate learns slowly.
        for epoch in range(1, max_epochs + 1):
            time.sleep(data.epoch_seconds)
            loss = final + (start - final) * math.exp(-speed * epoch) + rng.gauss(0.0, data.noise)
            yield {"val_loss": loss, "val_acc": 1.0 / (1.0 + loss)}
