"""The replay task: learning curves recorded from real training, replayed epoch by epoch.

A trial of :class:`ReplayModel` trains nothing: it looks its configuration up in a curve table
(:mod:`finesweep.models.curves`; benchmarks/data/digits_curves.jsonl.gz holds 20 epochs of the
digits CNN per configuration and seed, recorded by ``python -m benchmarks.record_curves``),
then reports the recorded ``val_acc`` and ``val_loss`` of each epoch after sleeping the
configuration's recorded epoch time (the median over its runs) times ``time_scale``. So a whole
sweep, any strategy, scheduler and concurrency, runs through ``launch.py sweep`` in seconds, and
schedulers see real curves with real seed-to-seed noise. No torch, no Lightning (a simulated
task, :mod:`finesweep.models.simulation`)::

    model:
      class_path: finesweep.models.replay.ReplayModel
    data:
      class_path: finesweep.models.replay.ReplayData
      init_args: {path: data/digits_curves.jsonl.gz, time_scale: 0.05}   # as benchmarks/replay.yaml

A sampled point that is not a recorded configuration (a float learning rate, a table recorded
only in part) replays the nearest recorded one; :class:`~finesweep.models.curves.CurveTable`
defines the distance. Trials whose seeds differ by one replay different recorded seeds.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from finesweep.models.components import Range
from finesweep.models.curves import Config, CurveTable
from finesweep.models.simulation import SimulatedData, SimulatedModel


class RecordedFailure(RuntimeError):
    """The recorded run failed at this point (e.g. its loss became NaN); so does its replay."""


@functools.lru_cache(maxsize=4)
def _table(path: str, modified_ns: int) -> CurveTable:
    # Cached per process and file version: a reused trial worker reads the table once per sweep.
    return CurveTable.read(path)


class ReplayData(SimulatedData):
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
        self.path, self.time_scale = path, time_scale

    def table(self) -> CurveTable:
        return _table(self.path, os.stat(self.path).st_mtime_ns)


class ReplayModel(SimulatedModel):
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
        self.params: dict[str, Any] = {
            "learning_rate": learning_rate, "optimizer": optimizer, "weight_decay": weight_decay,
            "conv_layers": conv_layers, "channels": channels, "dropout": dropout}

    def config(self, data: ReplayData) -> Config:
        """The recorded configuration this model replays: its own, or the nearest one."""
        return data.table().lookup(self.params)

    def simulate(self, data: SimulatedData, *, seed: int, max_epochs: int) -> Iterator[Mapping[str, float]]:
        if not isinstance(data, ReplayData):
            raise TypeError(f"ReplayModel replays a ReplayData, not a {type(data).__name__}")
        table = data.table()
        recorded = int(table.header.get("epochs", 0))
        if max_epochs > recorded:
            raise ValueError(f"the curve table holds {recorded} epochs per run; budget.max_epochs is "
                             f"{max_epochs} (at most {recorded})")
        config = self.config(data)
        run = config.run_for(seed)
        for epoch in range(min(max_epochs, run.epochs)):
            if data.time_scale:
                time.sleep(config.epoch_seconds * data.time_scale)
            yield {name: values[epoch] for name, values in run.metrics.items()}
        if run.epochs < max_epochs:
            raise RecordedFailure(f"the recorded run failed after epoch {run.epochs}: {run.error}")
