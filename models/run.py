"""What one training run is, without torch or Lightning: light enough for every reader."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any


def is_better(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` improves on ``best`` (None: nothing yet) in direction ``mode``."""
    return best is None or (value > best if mode == "max" else value < best)


@dataclass(frozen=True)
class TrainingRun:
    """Everything that decides what one training run computes, in LightningCLI's terms: the
    same object for a sweep trial, ``launch.py train``, reseeding and exports."""

    model: Mapping[str, Any]  # {"class_path": ..., "init_args": {...}}
    data: Mapping[str, Any]
    trainer: Mapping[str, Any]
    max_epochs: int
    seed: int
    metric: str
    mode: str

    def with_changes(self, **changes: Any) -> TrainingRun:
        return replace(self, **changes)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, max_epochs: int, seed: int, metric: str,
                    mode: str) -> TrainingRun:
        """A trial's recorded config (model, data, trainer sections) as a run."""
        return cls(model=config["model"], data=config["data"], trainer=config.get("trainer") or {},
                   max_epochs=max_epochs, seed=seed, metric=metric, mode=mode)
