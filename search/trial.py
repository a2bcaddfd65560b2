"""The trial side: what runs inside a trial worker. No Optuna, no Ray here.

The backend hands over a :class:`TrialRequest` (the complete training config chosen for the
trial) and a ``report`` function; this module trains through :mod:`models.training`,
writes per-epoch TensorBoard scalars, keeps the best weights and leaves a traceback file
behind when training raises.
"""

from __future__ import annotations

import logging
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SweepContext:
    """What every trial of one sweep shares; sent to each worker once."""

    task: str
    data: Mapping[str, Any]
    metric: str
    mode: str
    max_epochs: int
    run_dir: str
    cpus_per_trial: float


@dataclass(frozen=True)
class TrialRequest:
    number: int
    seed: int
    # Only the searched parameters that were active; `config` is the full training config.
    params: Mapping[str, Any]
    config: Mapping[str, Any]


def trial_dir(run_dir: str | Path, number: int) -> Path:
    return Path(run_dir) / "trials" / f"trial_{number:04d}"


def tensorboard_dir(run_dir: str | Path, number: int) -> Path:
    return Path(run_dir) / "tensorboard" / f"trial_{number:04d}"


def quiet_training_logs() -> None:
    """Lightning's start-up banners and tips, repeated per trial, drown the sweep's own view."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def run_trial(context: SweepContext, request: TrialRequest, report: Report,
              accelerator: str = "cpu") -> None:
    """Train one trial, calling ``report`` after every epoch with that epoch's metrics plus
    ``best_value`` and ``best_epoch`` so far (the trial's objective is its best epoch)."""
    from torch.utils.tensorboard import SummaryWriter

    from models.training import fit

    quiet_training_logs()
    artifacts = trial_dir(context.run_dir, request.number)
    artifacts.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(tensorboard_dir(context.run_dir, request.number)),
                           filename_suffix=".scalars")
    best: dict[str, Any] = {}

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            writer.add_scalar(name, value, epoch)
        writer.flush()
        value = metrics[context.metric]
        if not best or (value > best["value"] if context.mode == "max" else value < best["value"]):
            best.update(value=value, epoch=epoch)
        report({**metrics, "epoch": epoch, "best_value": best["value"], "best_epoch": best["epoch"]})

    try:
        fit(context.task, request.config, context.data, max_epochs=context.max_epochs,
            seed=request.seed, metric=context.metric, mode=context.mode,
            on_epoch_end=on_epoch_end, checkpoint_path=artifacts / "model.pt",
            accelerator=accelerator, threads=max(1, int(context.cpus_per_trial)))
    except Exception:
        (artifacts / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        raise
    finally:
        writer.close()


def failure_reason(run_dir: str | Path, number: int) -> str | None:
    """The last line of a failed trial's traceback (the exception and its message)."""
    path = trial_dir(run_dir, number) / "error.txt"
    if not path.exists():
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[-1][:300] if lines else None
