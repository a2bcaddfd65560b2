"""finesweep's Lightning callbacks for users' runs: ``finesweep.callbacks.ModelCost``."""

from __future__ import annotations

from finesweep.models.callbacks import ModelCost

__all__ = ["ModelCost"]
