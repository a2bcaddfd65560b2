"""Per-trial seeding of a strategy's sampler.

A sampler seeded once draws from one random stream; a resumed sweep builds a new sampler
whose stream starts over, so it would repeat the first trials' suggestions. Seeding each
trial's draws from (seed, trial number) instead makes trial N's suggestion the same whether
the sweep ran straight through or was killed and resumed before N, and derives all the
sampler's knowledge from the study's trials, never from hidden state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

if TYPE_CHECKING:
    from finesweep.search.spec import SweepSpec


def trial_seed(seed: int, number: int) -> int:
    return (seed * 1_000_003 + number) % (2**32)


class PerTrialSeededSampler(optuna.samplers.BaseSampler):
    """Delegates to a sampler built afresh for each trial with a seed derived from its number.

    The searcher samples a trial's whole space right after asking for it, so the sampler
    built for one trial is never used for another.
    """

    def __init__(self, build: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._build = build
        self._seed = seed
        self._current = build(seed)

    def reseed_rng(self) -> None:
        self._current.reseed_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._current = self._build(trial_seed(self._seed, trial.number))
        self._current.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._current.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: optuna.trial.TrialState,
                    values: Any) -> None:
        self._current.after_trial(study, trial, state, values)


def build_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """The spec's strategy; a seeded one draws per trial, so a resumed sweep goes on as
    an uninterrupted one would instead of repeating its first suggestions."""
    from finesweep.search.strategies import make_sampler
    from finesweep.search.strategies.multi_objective import make_multi_objective_sampler

    strategy = spec.strategy

    def build(seed: int | None) -> optuna.samplers.BaseSampler:
        if spec.multi:  # several objectives, or constraints for the sampler to weigh
            return make_multi_objective_sampler(strategy.name, spec.space, strategy.options,
                                                objectives=len(spec.objectives), seed=seed)
        return make_sampler(strategy.name, spec.space, strategy.options, seed)

    if strategy.seed is None:
        return build(None)
    return PerTrialSeededSampler(build, strategy.seed)
