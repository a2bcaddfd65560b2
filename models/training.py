"""One training run: the loop shared by sweep trials, ``launch.py train`` and reseeding.

A run is a :class:`TrainingRun`: the model and data as ``{class_path, init_args}``, Trainer
options, epochs, seed, and the metric that picks the best epoch. The model and DataModule are
used as they are (their loaders, ``setup``, ``test_step``); the metrics are what the module
logs with ``self.log``. It knows nothing of the search: callers pass an ``on_epoch_end``
callback (a sweep trial reports to its scheduler there; raising from it ends training).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from finesweep.models.components import ComponentError, import_class, instantiate
from finesweep.models.run import (
    Direction,
    MetricNotLoggedError,
    NonFiniteMetricError,
    Parallel,
    TrainingRun,
    check_epoch,
    reserved_callback,
)
from finesweep.models.state_files import discard_checkpoint, save_private_checkpoint, save_weights

__all__ = ["MetricNotLoggedError", "NonFiniteMetricError", "Parallel", "TrainingRun", "discard_checkpoint", "fit",
           "save_private_checkpoint", "save_weights"]

EpochCallback = Callable[[int, dict[str, float]], None]
# Where the scalars that Lightning's callbacks log (LearningRateMonitor's learning rates) go: (metrics, step).
ScalarSink = Callable[[dict[str, float], int], None]


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
    # The run's own callbacks or Trainer settings ended training before its max_epochs.
    stopped_early: bool = False
    # What the DataModule said about its data (sizes, classes), when it says anything.
    data_summary: str | None = None


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    values = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            values[name] = float(value.detach().cpu())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values[name] = float(value)
    return values


class _EpochEnd(pl.callbacks.Checkpoint):
    """Collects what the module logged each validated epoch, keeps the best weights and hands
    each epoch to the caller.

    A :class:`~pytorch_lightning.callbacks.Checkpoint` subclass on purpose: Lightning runs
    those after the module's own ``on_train_epoch_end``, so values logged there are seen too.
    """

    def __init__(self, metric: str, mode: str, checkpoint_path: Path | None,
                 on_epoch_end: EpochCallback | None, state_path: Path | None = None,
                 on_stop_early: Callable[[int], None] | None = None, final_state: bool = True) -> None:
        self.metric, self.mode = metric, mode
        # Whether the state is written after the last epoch too (a later run may go on from it).
        self.final_state = final_state
        self.on_stop_early = on_stop_early
        self.stopped_early = False
        self.state_path = state_path
        self.resumed_from_epoch = 0
        self.checkpoint_path = checkpoint_path
        self.on_epoch_end = on_epoch_end
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] = {}
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self._validated = False

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # An epoch without validation (check_val_every_n_epoch > 1) has no new value to rank.
        if not self._validated:
            return
        self._validated = False
        metrics = _mean_over_ranks(trainer, _floats(trainer.callback_metrics))
        epoch = trainer.current_epoch + 1
        check_epoch(self.metric, epoch, metrics)
        self.history.append({"epoch": epoch, **metrics})
        if Direction(self.mode).better(metrics[self.metric], self.best.get(self.metric)):
            self.best, self.best_epoch = dict(metrics), epoch
            self.best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
            if self.checkpoint_path is not None:
                save_weights(self.best_state, self.checkpoint_path)
        # Checkpoint callbacks run after every other one, EarlyStopping included: whether the
        # user's callbacks or settings (max_steps, max_time) end training now is known here.
        # (Lightning's `done` is asked only before the last epoch: there it also moves a counter.)
        last = epoch >= (trainer.max_epochs or 0) or trainer.fit_loop.done
        if self.state_path is not None and (self.final_state or not last):
            # Everything needed to go on after this epoch (weights, optimizer and scheduler
            # state, loop counters, this callback's history): written before the epoch is
            # reported, so a report always comes with the state it describes.
            save_private_checkpoint(trainer, self.state_path)
        if last and epoch < (trainer.max_epochs or 0):
            self.stopped_early = True
            if self.on_stop_early is not None:
                self.on_stop_early(epoch)
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
            save_weights(self.best_state, self.checkpoint_path)


def _mean_over_ranks(trainer: pl.Trainer, metrics: dict[str, float]) -> dict[str, float]:
    """Each rank's epoch metrics averaged over the ranks: what a module logs without
    ``sync_dist`` is its own shard's value, and every rank must rank epochs (and report) alike."""
    if trainer.world_size <= 1 or not metrics:
        return metrics
    names = sorted(metrics)
    values = torch.tensor([metrics[n] for n in names], dtype=torch.float64, device=trainer.strategy.root_device)
    reduced = trainer.strategy.reduce(values, reduce_op="mean")
    return dict(zip(names, (float(v) for v in reduced.cpu()), strict=True))


def trained_epochs(state_path: Path) -> list[dict[str, float]]:
    """The per-epoch metrics recorded in a training-state checkpoint written by :func:`fit`."""
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    return list(state["callbacks"][_EpochEnd.__qualname__]["history"])


def build(run: TrainingRun) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """The run's model and DataModule, seeded as LightningCLI seeds them (before building)."""
    # Both classes are checked before either is built: a config (a tampered record, say) that
    # names another kind of class, subprocess.Popen for one, never gets it constructed.
    _check_kind(run, "model")
    _check_kind(run, "data")
    pl.seed_everything(run.seed, workers=True, verbose=False)
    data = build_data(run)
    return build_model(run), data


def _check_kind(run: TrainingRun, section: str) -> None:
    """Refuse, before building it, a model that is not a LightningModule or data that is not
    a LightningDataModule."""
    class_path = (run.model if section == "model" else run.data)["class_path"]
    expected = pl.LightningModule if section == "model" else pl.LightningDataModule
    if not issubclass(import_class(class_path), expected):
        raise ComponentError(f"{section} {class_path} is not a {expected.__name__}")


def build_data(run: TrainingRun) -> pl.LightningDataModule:
    _check_kind(run, "data")
    return instantiate(run.data["class_path"], run.data.get("init_args") or {})


def build_model(run: TrainingRun) -> pl.LightningModule:
    _check_kind(run, "model")
    return instantiate(run.model["class_path"], run.model.get("init_args") or {})


class CallbackScalars(pl.loggers.Logger):
    """The trial's logger: it passes on what callbacks log straight to a logger
    (LearningRateMonitor's ``lr-Adam``, DeviceStatsMonitor's), and nothing the module logs with
    ``self.log``, which the run already records once per epoch. Without ``sink`` it keeps
    nothing: such callbacks still find a logger (LearningRateMonitor refuses to run without one)."""

    def __init__(self, sink: ScalarSink | None = None, log_dir: str | None = None) -> None:
        super().__init__()
        self.sink = sink
        self._log_dir = log_dir
        self.trainer: pl.Trainer | None = None

    @property
    def name(self) -> str:
        return "finesweep"

    @property
    def version(self) -> str:
        return "0"

    @property
    def log_dir(self) -> str | None:
        return self._log_dir

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # The search records a trial's parameters itself.

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.sink is None:
            return
        # Lightning adds what the module logged to trainer.logged_metrics before it hands
        # them to the loggers (with an `epoch` entry); a callback's own values never go there.
        own = set(self.trainer.logged_metrics) if self.trainer is not None else set()
        extra = _floats({k: v for k, v in metrics.items() if k not in own and k != "epoch"})
        if extra:
            self.sink(extra, int(step or 0))


def user_callbacks(given: Any) -> list[pl.Callback]:
    """The Trainer's ``callbacks`` option (LightningCLI's list of ``{class_path, init_args}``, one
    such mapping, or callback objects), built; one that does finesweep's own job is refused."""
    items = [] if given is None else list(given) if isinstance(given, Sequence) and not isinstance(given, str) \
        else [given]
    # A jsonargparse Namespace (a config its parser has read) stands for the mapping it holds.
    items = [c.as_dict() if callable(getattr(c, "as_dict", None)) else c for c in items]
    for callback in items:  # Checked before any is built, as build() checks the model and data.
        if isinstance(callback, Mapping) and not issubclass(import_class(str(callback.get("class_path"))), pl.Callback):
            raise ComponentError(f"trainer.callbacks: {callback.get('class_path')} is not a Lightning Callback")
    built = [instantiate(c["class_path"], c.get("init_args") or {}) if isinstance(c, Mapping) else c for c in items]
    for index, callback in enumerate(built):
        clash = reserved_callback(type(callback))
        if clash is not None:
            raise ValueError(f"trainer.callbacks[{index}] is {clash}")
    return built


def make_trainer(run: TrainingRun, callbacks: list[pl.Callback], accelerator: str = "cpu",
                 max_epochs: int | None = None, *, scalars: CallbackScalars | None = None,
                 overrides: Mapping[str, Any] | None = None, root_dir: str | Path | None = None,
                 parallel: Parallel | None = None) -> pl.Trainer:
    """A Trainer with the run's options and callbacks, finesweep's own settings for the reserved
    options, and ``overrides`` (a dry run's batch limits) over both."""
    options = {**dict(run.trainer), **(overrides or {})}
    # Lightning's sanity check repeats part of validation before training; a trial pays for
    # it on every start, so it is off unless the spec asks for it.
    options.setdefault("num_sanity_val_steps", 0)
    options.setdefault("enable_model_summary", False)
    extra = user_callbacks(options.pop("callbacks", None))
    logger = scalars or CallbackScalars()
    # enable_checkpointing stays on: Lightning then counts finesweep's own Checkpoint callback
    # and adds no ModelCheckpoint of its own.
    # A multi-worker run: the launcher's strategy and cluster environment, each process one device.
    spread = {"strategy": parallel.strategy, "plugins": list(parallel.plugins), "devices": "auto"} \
        if parallel is not None else {"devices": 1}
    trainer = pl.Trainer(max_epochs=max_epochs or run.max_epochs, accelerator=accelerator, **spread,
                         logger=logger, enable_checkpointing=True, enable_progress_bar=False,
                         default_root_dir=str(root_dir) if root_dir is not None else None,
                         callbacks=[*extra, *callbacks], **options)
    logger.trainer = trainer
    if parallel is not None and parallel.prepare is not None:
        trainer = parallel.prepare(trainer) or trainer
    return trainer


def data_summary(data: pl.LightningDataModule) -> str | None:
    """The DataModule's own one-line account of its data, if it gives one (``summary()``)."""
    summary = getattr(data, "summary", None)
    return str(summary()) if callable(summary) else None


def fit(run: TrainingRun, *, on_epoch_end: EpochCallback | None = None,
        checkpoint_path: Path | None = None, accelerator: str = "cpu", threads: int | None = None,
        evaluate_test: bool = False, state_path: Path | None = None,
        resume_from: Path | None = None, on_stop_early: Callable[[int], None] | None = None,
        scalars: ScalarSink | None = None,
        log_dir: str | Path | None = None, final_state: bool = True, parallel: Parallel | None = None) -> FitResult:
    """Train ``run`` and return its best epoch's metrics.

    The best epoch by ``run.metric`` is the model's result (its weights are saved to
    ``checkpoint_path``); the DataModule's test split is evaluated (its ``test_step``) only
    when asked, on those best weights. With ``state_path`` the full training state is written
    there (owner-only) after every epoch (but the last, unless ``final_state``); ``resume_from``
    (such a file) continues after its last epoch. ``on_stop_early(epoch)`` is called, before
    that epoch's ``on_epoch_end``, when
    the run's own callbacks or Trainer settings (EarlyStopping, max_steps, max_time) end
    training before ``run.max_epochs``. What callbacks log to the logger goes to ``scalars``.
    """
    started = time.perf_counter()
    if threads is not None:
        # One trial per `threads` cores: more intra-op threads would oversubscribe the
        # cores that concurrent trials are using.
        torch.set_num_threads(max(1, int(threads)))
    model, data = build(run)
    if parallel is not None and not parallel.writes:
        checkpoint_path = None  # Rank 0 writes the weights; the others hold the same ones.
    if checkpoint_path is not None:
        checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    tracker = _EpochEnd(run.metric, run.mode, checkpoint_path, on_epoch_end, state_path, on_stop_early,
                        final_state)
    logger = CallbackScalars(scalars, str(log_dir) if log_dir is not None else None)
    trainer = make_trainer(run, [tracker], accelerator, scalars=logger, root_dir=log_dir, parallel=parallel)
    # weights_only: a checkpoint is data; loading it never runs code from the file.
    trainer.fit(model, datamodule=data,
                ckpt_path=str(resume_from) if resume_from is not None else None, weights_only=True)
    if not tracker.history and not trainer.interrupted:
        every = int(getattr(trainer, "check_val_every_n_epoch", 1) or 1)
        reason = (f"validation runs every {every} epochs (trainer.check_val_every_n_epoch) but training "
                  f"stopped after {trainer.current_epoch}" if every > max(trainer.current_epoch, 1)
                  else "the DataModule needs a val_dataloader and the module a validation_step that logs it")
        raise MetricNotLoggedError(f"training ended without a validated epoch, so {run.metric!r} has no value: "
                                   + reason)
    result = FitResult(best_epoch=tracker.best_epoch, best=tracker.best, history=tracker.history,
                       seconds=time.perf_counter() - started, checkpoint=checkpoint_path,
                       resumed_from_epoch=tracker.resumed_from_epoch, data_summary=data_summary(data),
                       stopped_early=tracker.stopped_early)
    if evaluate_test and tracker.best_state is not None:
        model.load_state_dict(tracker.best_state)
        result.test = test(trainer, model, data)
    return result


def test(trainer: pl.Trainer, model: pl.LightningModule, data: pl.LightningDataModule) -> dict[str, float]:
    """What the module's ``test_step`` logs on the DataModule's test split."""
    if not (overrides(data, "test_dataloader", pl.LightningDataModule)
            and overrides(model, "test_step", pl.LightningModule)):
        return {}  # No test split or no test_step: nothing to report (the base hooks only raise).
    results = trainer.test(model, datamodule=data, verbose=False)
    merged: dict[str, float] = {}
    for metrics in results:
        merged.update(_floats(metrics))
    return merged


def overrides(obj: object, hook: str, base: type) -> bool:
    """Whether ``obj``'s class defines ``hook`` itself rather than inheriting Lightning's stub from
    ``base`` (``LightningDataModule.test_dataloader`` exists on every DataModule, and raises)."""
    return getattr(type(obj), hook, None) is not getattr(base, hook, None)
