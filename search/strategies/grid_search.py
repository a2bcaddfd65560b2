"""`grid`: every combination of categoricals and stepped ranges, each run once, in seeded order.

Conditional parameters are enumerated only where they are active, so a grid over
``optimizer: [adam, sgd]`` with ``momentum`` (3 values, sgd only) has 1 + 3 = 4 points, not 6.
Which points are left is read from the study's trials (running ones included), so concurrent or
resumed sweeps never repeat a point while one is left; after that, points repeat.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import optuna
from finesweep.search.space import FloatParam, SearchSpace, is_active
from finesweep.search.strategies._planning import Config, ConfigKey, PlannedSampler, config_key, random_config
from optuna.trial import FrozenTrial

# Enumerating more points than this takes long and no sweep runs them all.
MAX_GRID_POINTS = 100_000
ORDER_SALT = 0x67726964  # Keeps the shuffle apart from trial 0's draws.


def infinite_params(space: SearchSpace) -> list[str]:
    return [p.name for p in space.params if p.grid_values() is None]


def grid_points(space: SearchSpace, limit: int = MAX_GRID_POINTS) -> list[Config] | None:
    """Every point of the grid in enumeration order, or None past ``limit`` points."""
    if infinite_params(space):
        raise ValueError(f"strategy grid needs a finite space, but {', '.join(infinite_params(space))} "
                         "has no `step:`")
    points: list[Config] = []

    def expand(index: int, sampled: Config) -> Iterator[Config]:
        if index == len(space.params):
            yield dict(sampled)
            return
        param = space.params[index]
        if not is_active(param, sampled):
            yield from expand(index + 1, sampled)
            return
        for value in param.grid_values():
            sampled[param.name] = value
            yield from expand(index + 1, sampled)
        del sampled[param.name]

    for point in expand(0, {}):
        points.append(point)
        if len(points) > limit:
            return None
    return points


class GridSampler(PlannedSampler):
    tag = "grid"

    def __init__(self, space: SearchSpace, *, seed: int | None = None) -> None:
        super().__init__(space, seed)
        points = grid_points(space)
        if points is None:
            raise ValueError(f"strategy grid: the space has more than {MAX_GRID_POINTS} grid points")
        self._points = points
        self._keys = [config_key(point) for point in points]
        self._order: list[int] | None = None  # Seeded shuffle, drawn on first use.

    def prepare(self, study: optuna.Study, trial: FrozenTrial, taken: set[ConfigKey]) -> set[ConfigKey]:
        if self._order is None:
            self._order = [int(i) for i in self.rng(0, ORDER_SALT).permutation(len(self._points))]
        return taken

    def propose(self, context: set[ConfigKey], rng: np.random.Generator, fixed: Mapping[str, Any]) -> Config:
        fixed = {name: value for name, value in fixed.items() if name in self._space.names}
        for index in self._order or ():
            point = self._points[index]
            if self._keys[index] not in context and all(point.get(k) == v for k, v in fixed.items()):
                return dict(point)
        return random_config(self._space, rng, fixed)  # Every point is taken: repeat one.


def make_grid_sampler(space: SearchSpace, *, seed: int | None = None) -> optuna.samplers.BaseSampler:
    return GridSampler(space, seed=seed)


def check_grid_options(space: SearchSpace, options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The key "" marks a problem with choosing `grid` for this space at all."""
    missing = infinite_params(space)
    if missing:
        floats = [p.name for p in space.params if isinstance(p, FloatParam) and p.name in missing]
        return [("", "a finite space for strategy `grid`: every float parameter needs `step:`",
                 f"float parameter{'s' if len(floats) > 1 else ''} {', '.join(floats)} without a step")]
    if grid_points(space) is None:
        return [("", f"a grid of at most {MAX_GRID_POINTS} points for strategy `grid`",
                 "more points (coarser steps or fewer choices, or another strategy)")]
    return []
