"""`global`: model-based search over the whole space (Optuna's TPE, and its GP where that pays).

A Gaussian process finds optima of small numeric spaces in far fewer trials than TPE, but
each suggestion costs around a second. So `global` hands a trial to Optuna's GPSampler only
when the space suits it (numeric, unconditional, at most ``GP_MAX_PARAMS`` parameters) and
the suggestion costs at most ``gp_max_share`` of the sweep's median trial time, both read
from the study's trials; otherwise TPE. The choice is made per trial from the study alone,
so a resumed or distributed sweep chooses the same way.
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import TYPE_CHECKING, Any

import optuna
from finesweep.search.space import FloatParam, IntParam
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from finesweep.search.space import SearchSpace

GP_MAX_PARAMS = 10
# Seconds one GP suggestion is assumed to take until the study has measured one.
GP_COST_GUESS_S = 1.0
ENGINE_ATTR = "finesweep:global_engine"
COST_ATTR = "finesweep:suggest_seconds"


def make_global_sampler(space: SearchSpace, *, n_startup_trials: int = 8, n_ei_candidates: int = 24,
                        multivariate: bool = True, constant_liar: bool = True, gp: bool = True,
                        gp_max_share: float = 0.05, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """Multivariate TPE: models parameter interactions (learning rate x batch size) that
    independent TPE misses. ``constant_liar`` makes running trials count as bad results so
    concurrent trials are not handed the same suggestion. ``group`` splits the model by
    which conditional parameters are active, so `momentum` only learns from sgd trials.
    ``gp``: use the GP where it pays (see the module's docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        tpe = optuna.samplers.TPESampler(
            n_startup_trials=n_startup_trials, n_ei_candidates=n_ei_candidates,
            multivariate=multivariate, group=multivariate and space.is_conditional,
            constant_liar=constant_liar, seed=seed,
        )
    if not gp or not gp_suits(space):
        return tpe
    process = optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials, independent_sampler=tpe,
                                        warn_independent_sampling=False)
    return GlobalSampler(tpe, process, n_startup_trials=n_startup_trials, max_share=gp_max_share)


def gp_suits(space: SearchSpace) -> bool:
    return (0 < len(space.params) <= GP_MAX_PARAMS and not space.is_conditional
            and all(isinstance(p, (FloatParam, IntParam)) for p in space.params))


def median_trial_seconds(trials: list[FrozenTrial]) -> float | None:
    durations = [t.duration.total_seconds() for t in trials
                 if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.duration is not None]
    return statistics.median(durations) if durations else None


def gp_cost_seconds(trials: list[FrozenTrial]) -> float:
    measured = [t.system_attrs[COST_ATTR] for t in trials
                if t.system_attrs.get(ENGINE_ATTR) == "gp" and COST_ATTR in t.system_attrs]
    return statistics.median(measured) if measured else GP_COST_GUESS_S


class GlobalSampler(optuna.samplers.BaseSampler):
    """TPE, or the GP for trials where its suggestion time is a small share of a trial."""

    def __init__(self, tpe: optuna.samplers.BaseSampler, process: optuna.samplers.BaseSampler, *,
                 n_startup_trials: int, max_share: float) -> None:
        self._tpe, self._gp = tpe, process
        self._n_startup_trials = n_startup_trials
        self._max_share = max_share

    def use_gp(self, study: optuna.Study) -> bool:
        trials = study.get_trials(deepcopy=False)
        if sum(t.state == TrialState.COMPLETE for t in trials) < self._n_startup_trials:
            return False
        median = median_trial_seconds(trials)
        return median is not None and gp_cost_seconds(trials) <= self._max_share * median

    def _engine(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        current = study._storage.get_trial(trial._trial_id).system_attrs.get(ENGINE_ATTR)
        return self._gp if current == "gp" else self._tpe

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()
        self._gp.reseed_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        engine = "gp" if self.use_gp(study) else "tpe"
        # A system attribute, as Optuna's own samplers keep theirs: visible to every process.
        study._storage.set_trial_system_attr(trial._trial_id, ENGINE_ATTR, engine)
        (self._gp if engine == "gp" else self._tpe).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._engine(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        engine = self._engine(study, trial)
        started = time.perf_counter()
        sampled = engine.sample_relative(study, trial, search_space)
        if engine is self._gp:
            study._storage.set_trial_system_attr(trial._trial_id, COST_ATTR, time.perf_counter() - started)
        return sampled

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._engine(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._engine(study, trial).after_trial(study, trial, state, values)
