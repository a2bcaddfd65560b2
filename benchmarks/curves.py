"""Recorded learning curves: the file format, its reader and the lookup of a configuration.

A curve table is gzip-compressed JSON lines. The first line describes the recording (the task,
its fixed arguments, the grid of searched values, the epochs and seeds, how it was recorded);
every further line is one training run::

    {"params": {"learning_rate": 0.001, ...}, "seed": 0,
     "metrics": {"val_acc": [...one value per epoch...], "val_loss": [...]}, "epoch_s": [...]}

Runs are appended one gzip member at a time (``gzip`` reads the members as one stream), so a
recorder can stop anywhere and go on later; a member cut short by a kill is ignored when read.
Plain Python (no torch, no numpy): the replay task reads it inside trial workers.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
import statistics
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "finesweep-curves/1"


@dataclass(frozen=True)
class RecordedRun:
    """One training run of one configuration with one seed."""

    params: Mapping[str, Any]
    seed: int
    # Metric name -> its value after each epoch (index 0 is epoch 1).
    metrics: Mapping[str, Sequence[float]]
    # Seconds each epoch took (training and validation), measured from the first optimizer step.
    epoch_seconds: Sequence[float]
    # Why training stopped before the last epoch (NaN loss...), as the exception said; None if it did not.
    error: str | None = None

    @property
    def epochs(self) -> int:
        return len(self.epoch_seconds)

    def as_json(self) -> dict[str, Any]:
        return {"params": dict(self.params), "seed": self.seed,
                "metrics": {k: list(v) for k, v in self.metrics.items()}, "epoch_s": list(self.epoch_seconds),
                **({"error": self.error} if self.error else {})}


def config_key(params: Mapping[str, Any]) -> str:
    """A configuration's identity: its values in a canonical text form."""
    return json.dumps(dict(params), sort_keys=True)


def _lines(path: Path) -> Iterator[str]:
    """The complete lines of a (possibly multi-member) gzip file; a last member cut short by a
    killed writer ends the stream instead of raising."""
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        try:
            for line in stream:
                if line.endswith("\n"):
                    yield line
        except (EOFError, zlib.error, gzip.BadGzipFile):
            return


def read_curves(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[RecordedRun]]:
    """The header and the runs of a curve table."""
    lines = _lines(Path(path))
    header_line = next(lines, None)
    header = json.loads(header_line) if header_line else {}
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not a curve table (expected a first line with format {FORMAT!r})")
    runs = []
    for line in lines:
        entry = json.loads(line)
        runs.append(RecordedRun(entry["params"], int(entry["seed"]), entry["metrics"], entry["epoch_s"],
                                entry.get("error")))
    return header, runs


def start_table(path: str | os.PathLike[str], header: Mapping[str, Any]) -> None:
    """Create a table holding only ``header``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write(json.dumps({"format": FORMAT, **header}) + "\n")


def append_run(path: str | os.PathLike[str], run: RecordedRun) -> None:
    """Add one run as a gzip member of its own: what is on disk is always a readable table."""
    with gzip.open(path, "at", encoding="utf-8") as stream:
        stream.write(json.dumps(run.as_json(), separators=(",", ":")) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def compact(path: str | os.PathLike[str]) -> None:
    """Rewrite a table as one gzip member (appending leaves one per run, which compresses worse)."""
    header, runs = read_curves(path)
    temporary = Path(f"{path}.tmp")
    with gzip.open(temporary, "wt", encoding="utf-8", compresslevel=9) as stream:
        stream.write(json.dumps(header) + "\n")
        for run in runs:
            stream.write(json.dumps(run.as_json(), separators=(",", ":")) + "\n")
    os.replace(temporary, path)


@dataclass
class Config:
    """A recorded configuration and its runs, one per seed."""

    params: Mapping[str, Any]
    runs: list[RecordedRun] = field(default_factory=list)

    def run_for(self, seed: int) -> RecordedRun:
        """The run a trial with ``seed`` replays: trials with consecutive seeds take the recorded
        seeds in turn, so repeated trials of one configuration see its real seed-to-seed noise."""
        ordered = sorted(self.runs, key=lambda r: r.seed)
        return ordered[seed % len(ordered)]

    @functools.cached_property
    def epoch_seconds(self) -> float:
        """What one epoch of this configuration takes: the median of its recorded epochs, every
        seed. A run's own times also hold whatever else the recording machine ran at that moment
        (spikes of seconds on a shared machine); the median keeps the configuration's cost."""
        return statistics.median(t for run in self.runs for t in run.epoch_seconds) if self.runs else 0.0

    def best_value(self, metric: str, mode: str, epochs: int | None = None) -> float:
        """Mean over the recorded seeds of each run's best ``metric`` within ``epochs``: what a
        trial of this configuration is worth, its seed's luck averaged out."""
        pick = max if mode == "max" else min
        # A run that failed before its first epoch counts as the worst value there is.
        worst = -math.inf if mode == "max" else math.inf
        return sum(pick(r.metrics[metric][:epochs], default=worst) for r in self.runs) / len(self.runs)


class CurveTable:
    """A curve table's configurations, and the nearest one to any point of its space.

    Distance (used when a sampled point is not exactly a recorded one, e.g. a float learning
    rate): the sum over numeric parameters of how many grid steps apart the two values are,
    with a value between two grid values placed by linear interpolation (on a log scale when
    both neighbours are positive, so 3e-3 sits half-way between 1e-3 and 1e-2), plus a large
    penalty per categorical mismatch, so a point keeps its categories whenever they were recorded.
    Ties go to the configuration recorded first.
    """

    CATEGORY_MISMATCH = 1_000.0

    def __init__(self, header: Mapping[str, Any], runs: Sequence[RecordedRun]) -> None:
        self.header = dict(header)
        self.configs: dict[str, Config] = {}
        for run in runs:
            self.configs.setdefault(config_key(run.params), Config(run.params)).runs.append(run)
        if not self.configs:
            raise ValueError("the curve table holds no runs")
        self.parameters = sorted(next(iter(self.configs.values())).params)
        grid = {name: list(self.header.get("grid", {}).get(name, ())) for name in self.parameters}
        for name in self.parameters:
            grid[name] += [c.params[name] for c in self.configs.values() if c.params[name] not in grid[name]]
        numeric = [n for n in self.parameters
                   if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in grid[n])]
        self.grid = {name: sorted(values) if name in numeric else values for name, values in grid.items()}
        self._numeric = numeric
        self._categorical = [n for n in self.parameters if n not in numeric]
        # Every configuration's coordinates, computed once: a lookup compares a point with all of them.
        self._coordinates = [(config, *self._coordinates_of(config.params)) for config in self.configs.values()]

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> CurveTable:
        return cls(*read_curves(path))

    def position(self, name: str, value: float) -> float:
        """Where ``value`` lies on the grid of ``name``, in grid steps (0 = the smallest value)."""
        values = self.grid[name]
        if len(values) == 1:
            return 0.0
        # The grid segment holding the value; outside the grid the first or last one, extended.
        index = next((i for i in range(len(values) - 1) if value <= values[i + 1]), len(values) - 2)
        return index + _fraction(value, values[index], values[index + 1])

    def _coordinates_of(self, params: Mapping[str, Any]) -> tuple[list[float], list[Any]]:
        return ([self.position(n, params[n]) for n in self._numeric], [params[n] for n in self._categorical])

    @classmethod
    def _apart(cls, a: tuple[list[float], list[Any]], b: tuple[list[float], list[Any]]) -> float:
        steps = sum(abs(x - y) for x, y in zip(a[0], b[0], strict=True))
        return steps + cls.CATEGORY_MISMATCH * sum(x != y for x, y in zip(a[1], b[1], strict=True))

    def distance(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
        """How far apart two points are (see the class docstring)."""
        return self._apart(self._coordinates_of(a), self._coordinates_of(b))

    def lookup(self, params: Mapping[str, Any]) -> Config:
        """The recorded configuration of ``params``, or the nearest one (see the class docstring)."""
        missing = [name for name in self.parameters if name not in params]
        if missing:
            raise KeyError(f"the point lacks the table's parameters {', '.join(missing)}")
        point = {name: params[name] for name in self.parameters}
        exact = self.configs.get(config_key(point))
        if exact is not None:
            return exact
        where = self._coordinates_of(point)
        return min(self._coordinates, key=lambda item: self._apart(where, (item[1], item[2])))[0]

    def best(self, metric: str, mode: str, epochs: int | None = None) -> tuple[Config, float]:
        """The configuration with the best mean (over seeds) of its best epoch, and that value."""
        values = [(c, c.best_value(metric, mode, epochs)) for c in self.configs.values()]
        pick = max if mode == "max" else min
        return pick(values, key=lambda item: item[1])


def _fraction(value: float, low: float, high: float) -> float:
    """How far ``value`` is from ``low`` towards ``high`` (negative or above 1 outside them)."""
    if low == high:
        return 0.0
    if low > 0 and high > 0 and value > 0:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)
