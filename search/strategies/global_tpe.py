"""`global`: model-based search over the whole space (Optuna's TPE)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

    from search.space import SearchSpace


def make_global_sampler(space: SearchSpace, *, n_startup_trials: int = 8, n_ei_candidates: int = 24,
                        multivariate: bool = True, constant_liar: bool = True,
                        seed: int | None = None) -> optuna.samplers.BaseSampler:
    """Multivariate TPE: models parameter interactions (learning rate x batch size) that
    independent TPE misses. ``constant_liar`` makes running trials count as bad results so
    concurrent trials are not handed the same suggestion. ``group`` splits the model by
    which conditional parameters are active, so `momentum` only learns from sgd trials."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=n_startup_trials, n_ei_candidates=n_ei_candidates,
            multivariate=multivariate, group=multivariate and space.is_conditional,
            constant_liar=constant_liar, seed=seed,
        )
