"""`random`: independent uniform draws (log-uniform on log scales); the baseline to beat."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from finesweep.search.space import SearchSpace


def make_random_sampler(space: SearchSpace, *, seed: int | None = None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)
