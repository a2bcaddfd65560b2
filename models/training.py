"""One training run of a task: the loop shared by sweep trials and ``launch.py train``.

It knows nothing of the search: callers pass a resolved config and an ``on_epoch_end``
callback (a sweep trial reports to its scheduler there; raising from it ends training).
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from finesweep.models.tasks import get_task
from torch.utils.data import DataLoader, TensorDataset

EpochCallback = Callable[[int, dict[str, float]], None]


class NonFiniteMetricError(RuntimeError):
    """Training produced NaN or infinity: the run is broken, not merely bad."""


@dataclass(frozen=True)
class DataBundle:
    train: tuple[torch.Tensor, ...]
    val: tuple[torch.Tensor, ...]
    test: tuple[torch.Tensor, ...]
    # Keyword arguments the task's model needs from the data (classes, shapes, vocabulary).
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class FitResult:
    best_epoch: int
    best: dict[str, float]
    history: list[dict[str, float]]
    seconds: float
    checkpoint: Path | None = None
    test: dict[str, float] | None = None
    # Epochs a resumed run took from its training-state checkpoint instead of training.
    resumed_from_epoch: int = 0


def is_better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


class _EpochEnd(pl.Callback):
    """Collects per-epoch metrics, keeps the best weights and hands each epoch to the caller."""

    def __init__(self, metric: str, mode: str, checkpoint_path: Path | None,
                 on_epoch_end: EpochCallback | None,
                 on_first_step: Callable[[float], None] | None = None,
                 state_path: Path | None = None) -> None:
        self.metric, self.mode = metric, mode
        self.state_path = state_path
        self.resumed_from_epoch = 0
        self.on_first_step = on_first_step
        self.first_step_at: float | None = None
        self.checkpoint_path = checkpoint_path
        self.on_epoch_end = on_epoch_end
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] = {}
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # Wall-clock time of the first optimizer step: where per-trial overhead ends.
        if self.first_step_at is None:
            self.first_step_at = time.time()
            if self.on_first_step is not None:
                self.on_first_step(self.first_step_at)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # Lightning runs the epoch's validation before this hook, so val metrics are fresh.
        metrics = {"train_loss": module.take_train_loss(), **module.epoch_metrics}
        epoch = trainer.current_epoch + 1
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        if bad:
            raise NonFiniteMetricError(f"epoch {epoch}: non-finite {', '.join(bad)}: {metrics}")
        self.history.append({"epoch": epoch, **metrics})
        if is_better(metrics[self.metric], self.best.get(self.metric), self.mode):
            self.best, self.best_epoch = dict(metrics), epoch
            self.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            if self.checkpoint_path is not None:
                torch.save(self.best_state, self.checkpoint_path)
        if self.state_path is not None:
            # Everything needed to go on after this epoch (weights, optimizer and scheduler
            # state, loop counters, this callback's history): written before the epoch is
            # reported, so a report always comes with the state it describes.
            trainer.save_checkpoint(self.state_path)
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch, metrics)

    # Lightning keeps a callback's state in the training-state checkpoint: a resumed run
    # knows its earlier epochs and best weights. Plain tensors and numbers only, so the
    # checkpoint loads with weights_only=True.
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "best": self.best, "best_epoch": self.best_epoch,
                "best_state": self.best_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.best, self.best_epoch = dict(state_dict["best"]), int(state_dict["best_epoch"])
        self.best_state = state_dict["best_state"]
        self.resumed_from_epoch = len(self.history)
        if self.checkpoint_path is not None and self.best_state is not None:
            # The run that wrote the state may have died on another node with its files.
            torch.save(self.best_state, self.checkpoint_path)


def trained_epochs(state_path: Path) -> list[dict[str, float]]:
    """The per-epoch metrics recorded in a training-state checkpoint written by :func:`fit`."""
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    return list(state["callbacks"][_EpochEnd.__qualname__]["history"])


def _loader(tensors: tuple[torch.Tensor, ...], batch_size: int, shuffle: bool,
            seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle,
                      generator=generator)


def fit(task: str, config: Mapping[str, Any], data: Mapping[str, Any], *, max_epochs: int,
        seed: int, metric: str, mode: str, on_epoch_end: EpochCallback | None = None,
        checkpoint_path: Path | None = None, accelerator: str = "cpu",
        threads: int | None = None, evaluate_test: bool = False,
        on_first_step: Callable[[float], None] | None = None,
        state_path: Path | None = None, resume_from: Path | None = None) -> FitResult:
    """Train ``task`` with the resolved ``config`` and return the best epoch's metrics.

    The best epoch by ``metric`` is the model's result (its weights are saved to
    ``checkpoint_path``); the held-out test split is evaluated only when asked, on those
    best weights. With ``state_path`` the full training state is written there after every
    epoch; ``resume_from`` (such a file) continues training after its last epoch.
    """
    started = time.perf_counter()
    info = get_task(task)
    impl = importlib.import_module(info.module)
    if threads is not None:
        # One trial per `threads` cores: more intra-op threads would oversubscribe the
        # cores that concurrent trials are using.
        torch.set_num_threads(max(1, int(threads)))
    pl.seed_everything(seed, workers=False, verbose=False)
    bundle = impl.load_data(data)
    model = impl.build_model(config, bundle, max_epochs)
    if checkpoint_path is not None:
        checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    tracker = _EpochEnd(metric, mode, checkpoint_path, on_epoch_end, on_first_step, state_path)
    trainer = pl.Trainer(
        max_epochs=max_epochs, accelerator=accelerator, devices=1, logger=False,
        callbacks=[tracker], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, deterministic=False,
    )
    batch_size = int(config["batch_size"])
    # weights_only: a checkpoint is data; loading it never runs code from the file.
    trainer.fit(model, _loader(bundle.train, batch_size, True, seed),
                _loader(bundle.val, 512, False, seed),
                ckpt_path=str(resume_from) if resume_from is not None else None, weights_only=True)
    result = FitResult(best_epoch=tracker.best_epoch, best=tracker.best, history=tracker.history,
                       seconds=time.perf_counter() - started, checkpoint=checkpoint_path,
                       resumed_from_epoch=tracker.resumed_from_epoch)
    if evaluate_test and tracker.best_state is not None:
        model.load_state_dict(tracker.best_state)
        result.test = evaluate(model, bundle.test, accelerator)
    return result


def evaluate(model: pl.LightningModule, tensors: tuple[torch.Tensor, ...],
             accelerator: str = "cpu") -> dict[str, float]:
    """Loss and accuracy of ``model`` on a held-out split, named ``test_*``."""
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    model = model.to(device).eval()
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for batch in _loader(tensors, 512, False, 0):
            inputs, labels = (t.to(device) for t in batch)
            logits = model(inputs)
            loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(dim=1) == labels).sum())
            count += len(labels)
    return {"test_loss": loss_sum / count, "test_acc": correct / count}
