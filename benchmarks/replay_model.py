"""The replay task: learning curves recorded from real training, replayed epoch by epoch.

A trial of :class:`ReplayModel` trains nothing: it looks its configuration up in a curve table
(:mod:`benchmarks.curves`; benchmarks/data/digits_curves.jsonl.gz holds 20 epochs of the
digits CNN per configuration and seed, recorded by ``python -m benchmarks.record_curves``),
then reports the recorded ``val_acc`` and ``val_loss`` of each epoch after sleeping the
configuration's recorded epoch time (the median over its runs) times ``time_scale``. So a whole
sweep, any strategy, scheduler and concurrency, runs through ``launch.py sweep`` quickly, and
schedulers see real curves with real seed-to-seed noise. It is a LightningModule named by class
path like any user model (:mod:`benchmarks.scripted`): finesweep has no special case for it::

    model:
      class_path: benchmarks.replay_model.ReplayModel
    data:
      class_path: benchmarks.replay_model.ReplayData
      init_args: {path: data/digits_curves.jsonl.gz, time_scale: 0.05}   # as benchmarks/replay.yaml

A sampled point that is not a recorded configuration (a float learning rate, a table recorded
only in part) replays the nearest recorded one; :class:`~benchmarks.curves.CurveTable`
defines the distance. Trials whose seeds differ by one replay different recorded seeds.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from finesweep.models.components import Range

from benchmarks.curves import Config, CurveTable, RecordedRun
from benchmarks.scripted import ScriptedData, ScriptedModule


class RecordedFailure(RuntimeError):
    """The recorded run failed at this point (e.g. its loss became NaN); so does its replay."""


@functools.lru_cache(maxsize=4)
def _table(path: str, modified_ns: int) -> CurveTable:
    # Cached per process and file version: a reused trial worker reads the table once per sweep.
    return CurveTable.read(path)


class ReplayData(ScriptedData):
    """A curve table and how fast to replay it."""

    def __init__(self, path: str, time_scale: Annotated[float, Range(0.0)] = 0.01) -> None:
        """
        Args:
            path: the curve table (.jsonl.gz), relative to the spec's folder
            time_scale: replayed epoch time / recorded epoch time (0: no sleeping at all); the
                recorded time is the configuration's median epoch (see Config.epoch_seconds)
        """
        if not Path(path).is_file():
            raise FileNotFoundError(f"no curve table at {path} (python -m benchmarks.record_curves records one)")
        super().__init__()
        self.path, self.time_scale = path, time_scale

    def table(self) -> CurveTable:
        return _table(self.path, os.stat(self.path).st_mtime_ns)


class ReplayModel(ScriptedModule):
    """The digits CNN of ``benchmarks/record_curves.py``, by its searched arguments; a table
    recorded over other parameters needs a subclass whose arguments are those parameters."""

    def __init__(
        self,
        learning_rate: Annotated[float, Range(0.0)] = 1e-3,
        optimizer: Literal["adam", "sgd"] = "adam",
        weight_decay: Annotated[float, Range(0.0)] = 1e-3,
        conv_layers: Annotated[int, Range(1, 6)] = 2,
        channels: Annotated[int, Range(1)] = 16,
        dropout: Annotated[float, Range(0.0, 0.95)] = 0.25,
    ) -> None:
        """
        Args:
            learning_rate: peak learning rate
            optimizer: adam or sgd (momentum 0.9)
            weight_decay: L2 weight decay
            conv_layers: convolution blocks
            channels: width of the first block
            dropout: dropout before the head
        """
        super().__init__()
        self._replayed: tuple[Config, RecordedRun] | None = None
        self.params: dict[str, Any] = {
            "learning_rate": learning_rate, "optimizer": optimizer, "weight_decay": weight_decay,
            "conv_layers": conv_layers, "channels": channels, "dropout": dropout}

    def config(self, data: ReplayData) -> Config:
        """The recorded configuration this model replays: its own, or the nearest one."""
        return data.table().lookup(self.params)

    def _data(self) -> ReplayData:
        data = self.trainer.datamodule
        if not isinstance(data, ReplayData):
            raise TypeError(f"ReplayModel replays a ReplayData, not a {type(data).__name__}")
        return data

    def _recorded(self) -> tuple[Config, RecordedRun]:
        if self._replayed is None:  # Looked up once per run: the nearest of ~1,000 configurations.
            config = self.config(self._data())
            self._replayed = config, config.run_for(self.seed)
        return self._replayed

    def check(self, max_epochs: int) -> None:
        recorded = int(self._data().table().header.get("epochs", 0))
        if max_epochs > recorded:
            raise ValueError(f"the curve table holds {recorded} epochs per run; budget.max_epochs is "
                             f"{max_epochs} (at most {recorded})")

    def epoch_seconds(self, epoch: int) -> float:
        config, run = self._recorded()
        if epoch > run.epochs:
            raise RecordedFailure(f"the recorded run failed after epoch {run.epochs}: {run.error}")
        return config.epoch_seconds * self._data().time_scale

    def epoch_metrics(self, epoch: int) -> Mapping[str, float]:
        _, run = self._recorded()
        return {name: values[epoch - 1] for name, values in run.metrics.items()}
