"""A dry run of one training config: build it, run ``setup``, one training and one validation
batch, and say which part raised. Knows nothing of the search: the sweep's driver calls it
before Ray starts (:mod:`finesweep.search.dry_run`) and turns a :class:`DryRunFailure`'s
``culprit`` (a path into the config) into the spec key to report.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from finesweep.models.components import import_class
from finesweep.models.run import MetricNotLoggedError, TrainingRun
from finesweep.models.training import _floats, build_data, build_model, data_summary, make_trainer, user_callbacks

# Config path of the part that raised: ("data",), ("model", "init_args", "encoder"),
# ("trainer", "callbacks", 1), ("trainer",), ("metric",).
Culprit = tuple[Any, ...]

# The Trainer options a dry run sets over the run's own: one epoch of one training and one
# validation batch, validated at its end, nothing that would make it run longer.
DRY_RUN_OPTIONS = {"limit_train_batches": 1, "limit_val_batches": 1, "check_val_every_n_epoch": 1,
                   "val_check_interval": 1.0, "num_sanity_val_steps": 0, "min_epochs": None, "min_steps": None}


class DryRunFailure(Exception):
    """The config cannot train: ``stage`` says when, ``culprit`` which part of the config raised."""

    def __init__(self, stage: str, culprit: Culprit, error: BaseException) -> None:
        self.stage, self.culprit, self.error = stage, culprit, error
        text = " ".join(str(error).split())
        self.reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
        super().__init__(f"{stage}: {self.reason}")


@dataclass(frozen=True)
class DryRunResult:
    logged: dict[str, float]
    data_summary: str | None
    seconds: float


class _Observe(pl.callbacks.Checkpoint):
    """What the module logged by the end of the epoch (a Checkpoint subclass, so Lightning adds
    no ModelCheckpoint of its own and runs this after the module's ``on_train_epoch_end``)."""

    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.logged = _floats(trainer.callback_metrics)


@contextlib.contextmanager
def _random_state_kept() -> Iterator[None]:
    """Seeding the dry run's model (as LightningCLI seeds) must not seed the caller's own draws."""
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    env = {name: os.environ.get(name) for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def nested_components(config: Mapping[str, Any], path: Culprit = ()) -> Iterator[tuple[Culprit, str]]:
    """(config path, class path) of every ``{class_path, ...}`` mapping inside ``config``."""
    for key, value in config.items():
        if isinstance(value, Mapping):
            if isinstance(value.get("class_path"), str):
                yield (*path, key), value["class_path"]
            yield from nested_components(value, (*path, key))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    if isinstance(item.get("class_path"), str):
                        yield (*path, key, index), item["class_path"]
                    yield from nested_components(item, (*path, key, index))


class _Suspects:
    """The objects and classes a run is built from, by config path, to name the part of the
    config that a traceback comes from."""

    def __init__(self, run: TrainingRun) -> None:
        self.objects: list[tuple[Any, Culprit]] = []
        self.classes: list[tuple[type, Culprit]] = []
        for section in ("model", "data"):
            for path, class_path in nested_components(dict(getattr(run, section).get("init_args") or {}),
                                                      (section, "init_args")):
                with contextlib.suppress(Exception):
                    self.classes.append((import_class(class_path), path))

    def add(self, obj: Any, path: Culprit) -> None:
        self.objects.append((obj, path))
        self.classes.append((type(obj), path))

    def culprit(self, traceback: types.TracebackType | None, default: Culprit) -> Culprit:
        frames = []
        while traceback is not None:
            frames.append(traceback.tb_frame)
            traceback = traceback.tb_next
        frames.reverse()  # innermost first
        for frame in frames:  # a method of one of the run's objects, or of a nested class's instance
            owner = frame.f_locals.get("self")
            if owner is None:
                continue
            for obj, path in self.objects:
                if owner is obj:
                    return path
            for cls, path in reversed(self.classes):
                if type(owner) is cls:
                    return path
        for frame in frames:  # code in the file of exactly one of the run's classes
            paths = {path for cls, path in self.classes if _source_file(cls) == frame.f_code.co_filename}
            if len(paths) == 1:
                return paths.pop()
        if any(f"torch{os.sep}utils{os.sep}data{os.sep}" in frame.f_code.co_filename for frame in frames):
            return ("data",)
        return default


def _source_file(cls: type) -> str | None:
    module = sys.modules.get(cls.__module__)
    return getattr(module, "__file__", None)


def dry_run(run: TrainingRun, watched: Sequence[tuple[tuple[str, ...], str]] = ()) -> DryRunResult:
    """Build ``run``'s model, DataModule and Trainer (the run's own options and callbacks), and fit
    one training and one validation batch on the CPU; raise :class:`DryRunFailure` naming the
    part of the config that raised, or the metric when ``run.metric`` was not logged (or a name of
    ``watched``, given with the spec key to blame: an objective, a constrained value). Nothing is
    written outside a temporary folder, and the caller's random state is left as it was."""
    started = time.perf_counter()
    suspects = _Suspects(run)
    with _random_state_kept(), tempfile.TemporaryDirectory(prefix="finesweep-dry-run-") as root:
        pl.seed_everything(run.seed, workers=True, verbose=False)  # as LightningCLI and training do
        data = _stage("building the data", suspects, ("data",), lambda: build_data(run))
        model = _stage("building the model", suspects, ("model",), lambda: build_model(run))
        suspects.add(model, ("model",))
        suspects.add(data, ("data",))
        options = dict(run.trainer)
        given = options.pop("callbacks", None)
        items = [] if given is None else list(given) if isinstance(given, (list, tuple)) else [given]
        callbacks = []
        for index, item in enumerate(items):
            try:
                callbacks += user_callbacks([item])
            except Exception as error:
                raise DryRunFailure("building the Trainer's callbacks", ("trainer", "callbacks", index),
                                    error) from error
            suspects.add(callbacks[-1], ("trainer", "callbacks", index))
        observe = _Observe()
        try:
            trainer = make_trainer(run.with_changes(trainer=options), [*callbacks, observe], max_epochs=1,
                                   overrides=DRY_RUN_OPTIONS, root_dir=root)
        except Exception as error:
            raise DryRunFailure("building the Trainer", ("trainer",), error) from error
        try:
            trainer.fit(model, datamodule=data)
        except Exception as error:
            raise DryRunFailure("setup and one training and one validation batch",
                                suspects.culprit(error.__traceback__, ("model",)), error) from error
        for key, name in [(("metric",), run.metric), *watched]:
            if name not in observe.logged:
                logged = ", ".join(sorted(observe.logged)) or "nothing"
                raise DryRunFailure("one training and one validation batch", key, MetricNotLoggedError(
                    f"{key[0].rstrip('s')} {name!r} was not logged; the module logged: {logged} "
                    f"(name one of these as `{key[0]}:`, or log it with self.log in validation_step)"))
        return DryRunResult(observe.logged, data_summary(data), time.perf_counter() - started)


def _stage(stage: str, suspects: _Suspects, default: Culprit, step: Callable[[], Any]) -> Any:
    try:
        return step()
    except Exception as error:
        raise DryRunFailure(stage, suspects.culprit(error.__traceback__, default), error) from error


__all__ = ["DryRunFailure", "DryRunResult", "dry_run"]
