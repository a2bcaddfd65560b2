"""What one training run is, without torch or Lightning: light enough for every reader."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# Trainer options finesweep sets itself, and what a spec should use instead (the spec check
# reads them too, without importing Lightning).
RESERVED_TRAINER_OPTIONS = {
    "max_epochs": "the budget sets it: use budget.max_epochs",
    "accelerator": "Ray places the trial: use resources.gpus",
    "devices": "Ray places the trial: use resources.gpus",
    "num_nodes": "Ray places the trial's workers: use resources.workers and resources.placement",
    "strategy": "Ray Train runs a trial's workers: use resources.workers and resources.strategy",
    "logger": "finesweep writes TensorBoard itself",
    "enable_checkpointing": "finesweep keeps the best weights itself",
    "enable_progress_bar": "finesweep prints the sweep's progress",
    "default_root_dir": "the run directory holds every trial's files",
}
# Lightning callbacks (by the name of a Lightning base class) that would do what finesweep does
# itself in every run, and what to do instead. A class is matched on its MRO's names, so the
# spec check needs no import of Lightning to apply the rule.
RESERVED_CALLBACKS = {
    "ModelCheckpoint": "finesweep keeps each trial's best weights itself (and best.yaml names them): remove it",
    "ProgressBar": "finesweep prints the sweep's progress itself: remove it (or set no progress bar)",
}
_LIGHTNING_PACKAGES = ("pytorch_lightning.", "lightning.pytorch.")


def staging_folder(path: Path) -> Path:
    """The owner-only folder beside a training-state file ``path`` through which it is written
    (``models.training.save_private_checkpoint``); named here, where no torch is imported, so
    the driver can remove it too."""
    return path.with_name(f".{path.name}.partial")


def reserved_callback(cls: type) -> str | None:
    """Why ``cls``, a callback class, clashes with what finesweep does itself; None when it does not."""
    for base in getattr(cls, "__mro__", ()):
        if base.__module__.startswith(_LIGHTNING_PACKAGES) and base.__name__ in RESERVED_CALLBACKS:
            return f"a {base.__name__}: {RESERVED_CALLBACKS[base.__name__]}"
    return None


# How metric names say which split they were measured on: `val_acc`, `val/acc`, `test-loss`.
SPLIT_SEPARATORS = ("_", "/", "-", ".")


def metric_split(name: str) -> str | None:
    """"train", "val" or "test" for a metric named after its split (``val_acc``, ``val/acc``,
    ``valid_loss``, ``test/acc``), else None."""
    lowered = name.lower()
    for split, words in (("train", ("train", "training")), ("val", ("val", "valid", "validation")),
                         ("test", ("test",))):
        if any(lowered.startswith(word + sep) for word in words for sep in SPLIT_SEPARATORS):
            return split
    return None


@dataclass(frozen=True)
class Direction:
    """Which way a metric improves, from a spec's ``mode`` ("min" or "max"): the one rule for
    "better", "best" and "best first" that trials, rankings, reports and exports share."""

    mode: str

    def __post_init__(self) -> None:
        # A missing or misspelt mode is refused, never read as one of the two.
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode: expected min or max, found {self.mode!r}")

    @property
    def maximizes(self) -> bool:
        return self.mode == "max"

    def better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` improves on ``best`` (None: nothing yet)."""
        return best is None or (value > best if self.maximizes else value < best)

    def best(self, values: Iterable[float]) -> float:
        return max(values) if self.maximizes else min(values)

    def sort_key(self, value: float) -> float:
        """Ascending order of this key is best first."""
        return -value if self.maximizes else value


class NonFiniteMetricError(RuntimeError):
    """Training produced NaN or infinity: the run is broken, not merely bad."""


class MetricNotLoggedError(RuntimeError):
    """The metric that ranks trials is not among what the module logs; every trial would fail
    the same way, so a sweep stops on it."""


def check_epoch(metric: str, epoch: int, metrics: Mapping[str, float]) -> None:
    """Raise when an epoch's logged ``metrics`` cannot rank the run: ``metric`` missing, or it
    (or a loss) not finite."""
    if metric not in metrics:
        logged = ", ".join(sorted(metrics)) or "nothing"
        raise MetricNotLoggedError(
            f"metric {metric!r} was never logged; the module logged: {logged} (name one of "
            "these as `metric:`, or log it with self.log in validation_step)")
    watched = {k: v for k, v in metrics.items() if k == metric or "loss" in k}
    bad = sorted(k for k, v in watched.items() if not math.isfinite(v))
    if bad:
        raise NonFiniteMetricError(f"epoch {epoch}: non-finite {', '.join(bad)}: {dict(metrics)}")


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


@dataclass(frozen=True)
class Parallel:
    """How one process of a run spread over several workers trains: the Lightning ``strategy``
    (a DDP or FSDP strategy object) and ``plugins`` (its cluster environment) the launcher built,
    this process's ``rank`` of ``world_size``, and ``prepare``, called on the Trainer before
    ``fit`` (the launcher's own check of it). Only rank 0 writes files: weights, the training
    state, TensorBoard. The launcher (search/ray_backend.py) builds it; models/ never sees how."""

    strategy: Any
    plugins: tuple[Any, ...] = ()
    rank: int = 0
    world_size: int = 1
    prepare: Callable[[Any], Any] | None = None

    @property
    def writes(self) -> bool:
        return self.rank == 0
