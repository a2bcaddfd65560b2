"""Shared machinery of finesweep's own samplers: a whole configuration planned once per trial.

Optuna asks for one parameter at a time (define-by-run), but local, genetic, annealing and grid
search reason about whole configurations. A :class:`PlannedSampler` therefore plans a trial's
complete configuration on its first parameter request, from the search space and the study's
trials alone, then hands that plan out one parameter at a time. Nothing else carries over from
one trial to the next, so a resumed or distributed sweep plans exactly the same. Randomness comes
from a generator keyed by (seed, trial number): the same seed gives the same sequence in a
sequential run, and trials that run at the same time never share a draw.
"""

from __future__ import annotations

import abc
import math
import secrets
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from finesweep.search.space import CategoricalParam, FloatParam, IntParam, Param, SearchSpace, is_active
from finesweep.search.study import direction_of
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

# System attribute naming the strategy that planned a trial; local search counts only its
# own proposals as successes or failures when it resizes its trust region.
PLANNED_BY = "finesweep:planned_by"
# Proposals tried before falling back to random ones when every proposal is already taken.
MAX_PROPOSALS = 32

Config = dict[str, Any]
ConfigKey = tuple[tuple[str, Any], ...]


# --------------------------------------------------------------------------- encoding


def _unit_bounds(param: FloatParam | IntParam) -> tuple[float, float, float | None]:
    """(lo, hi, step) of the scale the unit interval maps onto. Discrete ranges reach half a
    step past each end so rounding gives the end values their fair share."""
    step = param.step
    low, high = float(param.low), float(param.high)
    if step is not None:
        high = low + math.floor((high - low) / step + 1e-9) * step
        low, high = low - 0.5 * step, high + 0.5 * step
        if param.log:
            low = max(low, float(param.low) * 0.5)
    if param.log:
        return math.log(low), math.log(high), step
    return low, high, step


def to_unit(param: FloatParam | IntParam, value: float) -> float:
    lo, hi, _ = _unit_bounds(param)
    x = math.log(value) if param.log else float(value)
    return 0.5 if hi <= lo else min(1.0, max(0.0, (x - lo) / (hi - lo)))


def from_unit(param: FloatParam | IntParam, u: float) -> float | int:
    lo, hi, step = _unit_bounds(param)
    x = lo + min(1.0, max(0.0, float(u))) * (hi - lo)
    value = math.exp(x) if param.log else x
    if step is None:
        return float(min(param.high, max(param.low, value)))
    count = int(math.floor((param.high - param.low) / step + 1e-9))
    index = min(count, max(0, round((value - param.low) / step)))
    if isinstance(param, IntParam):
        return int(param.low + index * step)
    # The same rounding as FloatParam.grid_values, so grid points and proposals compare equal.
    return round(param.low + index * step, 12)


def random_value(param: Param, rng: np.random.Generator) -> Any:
    if isinstance(param, CategoricalParam):
        return param.choices[int(rng.integers(len(param.choices)))]
    return from_unit(param, rng.random())


def param_for(name: str, distribution: BaseDistribution) -> Param:
    """A space parameter equivalent to an Optuna distribution (for names outside the space)."""
    if isinstance(distribution, CategoricalDistribution):
        return CategoricalParam(name, tuple(distribution.choices))
    if isinstance(distribution, FloatDistribution):
        return FloatParam(name, distribution.low, distribution.high, distribution.log, distribution.step)
    return IntParam(name, int(distribution.low), int(distribution.high), distribution.log,
                    int(distribution.step))


def config_key(params: Mapping[str, Any]) -> ConfigKey:
    return tuple(sorted(params.items(), key=lambda item: item[0]))


def build(space: SearchSpace, choose: Callable[[Param, Config], Any], fixed: Mapping[str, Any]) -> Config:
    """A configuration of every active parameter in sampling order: fixed (enqueued) values
    first, ``choose(param, so_far)`` for the rest; inactive parameters are left out."""
    config: Config = {}
    for param in space.params:
        if is_active(param, config):
            config[param.name] = fixed[param.name] if param.name in fixed else choose(param, config)
    return config


def random_config(space: SearchSpace, rng: np.random.Generator, fixed: Mapping[str, Any]) -> Config:
    return build(space, lambda param, _: random_value(param, rng), fixed)


def perturb(space: SearchSpace, center: Mapping[str, Any], radius: float, mutation_prob: float,
            rng: np.random.Generator, fixed: Mapping[str, Any]) -> Config:
    """A neighbour of ``center``: Gaussian steps of ``radius`` (a fraction of each range, on the
    log scale for log parameters), categoricals kept except with ``mutation_prob``; a parameter
    inactive at ``center`` is drawn afresh when it becomes active."""
    numeric = [p for p in space.params if not isinstance(p, CategoricalParam) and p.name in center]
    # In many dimensions a step in all of them at once rarely improves; move a subset (TuRBO).
    move_prob = min(1.0, 20.0 / max(1, len(numeric)))

    def choose(param: Param, _: Config) -> Any:
        if param.name not in center:
            return random_value(param, rng)
        value = center[param.name]
        if isinstance(param, CategoricalParam):
            others = [c for c in param.choices if c != value]
            if others and rng.random() < mutation_prob:
                return others[int(rng.integers(len(others)))]
            return value
        if rng.random() >= move_prob:
            return value
        return from_unit(param, to_unit(param, value) + radius * rng.standard_normal())

    return build(space, choose, fixed)


# --------------------------------------------------------------------------- history


@dataclass(frozen=True)
class Observed:
    """A finished trial as the samplers see it: ``loss`` is its value as a minimisation (the
    study direction's :meth:`~finesweep.models.run.Direction.sort_key`), so lower is better."""

    number: int
    params: Mapping[str, Any]
    loss: float
    planned_by: str | None


def history(study: optuna.Study, anchor: Mapping[str, Any] | None = None) -> list[Observed]:
    """COMPLETE trials in trial-number order, as losses (lower is better). A study of several
    objectives needs an ``anchor`` (`local`'s start point, a chosen Pareto trial's values): see
    :func:`anchored_history`."""
    if len(study.directions) > 1:
        if anchor is None:
            raise ValueError(f"finesweep's strategies optimise one objective, but the study has "
                             f"{len(study.directions)} directions")
        return anchored_history(study, anchor)
    direction = direction_of(study.direction)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted((Observed(t.number, t.params, direction.sort_key(float(t.value)), t.system_attrs.get(PLANNED_BY))
                   for t in trials if t.value is not None and math.isfinite(t.value)),
                  key=lambda o: o.number)


def anchored_history(study: optuna.Study, anchor: Mapping[str, Any]) -> list[Observed]:
    """Several objectives scalarised around the trial that ran ``anchor``'s values: a trial's
    loss is its largest step away from that trial over the objectives (Chebyshev, each objective
    scaled by its range over the COMPLETE trials; in minimisation form), so a negative loss
    improves on the anchor in every objective and the search stays near that Pareto point.
    A trial that breaks a constraint never improves (inf); none yet before the anchor has run."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.values is not None and all(math.isfinite(v) for v in t.values)]
    signs = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    points = {t.number: [s * v for s, v in zip(signs, t.values, strict=True)] for t in trials}
    start = next((t for t in sorted(trials, key=lambda t: t.number)
                  if all(t.params.get(k) == v for k, v in anchor.items())), None)
    if start is None:
        return []
    scales = [max(p[k] for p in points.values()) - min(p[k] for p in points.values()) or 1.0
              for k in range(len(signs))]

    def loss(trial: FrozenTrial) -> float:
        if any(v > 0 for v in trial.constraints.values()):
            return math.inf
        return max((a - b) / scale for a, b, scale in zip(points[trial.number], points[start.number], scales,
                                                           strict=True))

    return sorted((Observed(t.number, t.params, loss(t), t.system_attrs.get(PLANNED_BY)) for t in trials),
                  key=lambda o: o.number)


def best(observed: Iterable[Observed]) -> Observed | None:
    return min(observed, key=lambda o: (o.loss, o.number), default=None)


# --------------------------------------------------------------------------- sampler

_MASK = (1 << 64) - 1


def _splitmix(x: int) -> int:
    """SplitMix64: a well-mixed 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)



class PlannedSampler(optuna.samplers.BaseSampler, abc.ABC):
    """Base of finesweep's samplers: subclasses say how to :meth:`prepare` a trial from the
    study (once) and :meth:`propose` a configuration (as often as duplicates need)."""

    tag = "planned"

    def __init__(self, space: SearchSpace, seed: int | None = None) -> None:
        self._space = space
        self._seed = seed
        self._base_seed = seed  # Drawn lazily when not given, so copies don't repeat draws.
        self._plans: dict[int, Config] = {}

    # ---- for subclasses

    @abc.abstractmethod
    def prepare(self, study: optuna.Study, trial: FrozenTrial, taken: set[ConfigKey]) -> Any:
        """What this trial's proposals start from (an incumbent, a population)."""

    @abc.abstractmethod
    def propose(self, context: Any, rng: np.random.Generator, fixed: Mapping[str, Any]) -> Config:
        """One complete configuration of the active parameters."""

    def rng(self, number: int, salt: int = 0) -> np.random.Generator:
        if self._base_seed is None:
            self._base_seed = secrets.randbits(63)
        return np.random.default_rng([self._base_seed, number, salt])

    def uniform(self, number: int, salt: int = 0) -> float:
        """One uniform draw keyed like :meth:`rng`, ~50x cheaper (for replaying many trials)."""
        if self._base_seed is None:
            self._base_seed = secrets.randbits(63)
        return _splitmix((_splitmix(self._base_seed ^ salt) ^ number) & _MASK) / 2.0 ** 64

    # ---- BaseSampler

    def reseed_rng(self) -> None:
        if self._seed is None:
            self._base_seed = None

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        plan = self._plans.get(trial._trial_id)
        if plan is None:
            plan = self._plans[trial._trial_id] = self._plan(study, trial)
        if param_name in plan:
            value = plan[param_name]
            try:
                if param_distribution._contains(param_distribution.to_internal_repr(value)):
                    return value
            except (ValueError, TypeError):
                pass
        # A name or range outside the space this sampler was built for: draw it uniformly.
        salt = zlib.crc32(param_name.encode())
        return random_value(param_for(param_name, param_distribution), self.rng(trial.number, salt))

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self._plans.pop(trial._trial_id, None)

    # ---- planning

    def _taken(self, study: optuna.Study, trial: FrozenTrial) -> set[ConfigKey]:
        """Configurations already run, running or planned here: proposing one again wastes a
        trial, and running trials count so that concurrent trials differ."""
        taken = {config_key(t.params) for t in study.get_trials(deepcopy=False)
                 if t.number != trial.number and t.params}
        taken.update(config_key(plan) for trial_id, plan in self._plans.items() if trial_id != trial._trial_id)
        return taken

    def _plan(self, study: optuna.Study, trial: FrozenTrial) -> Config:
        fixed = trial.system_attrs.get("fixed_params", {})
        taken = self._taken(study, trial)
        context = self.prepare(study, trial, taken)
        rng = self.rng(trial.number)
        config: Config = {}
        for attempt in range(2 * MAX_PROPOSALS):
            # The strategy's own proposals first; random ones if those are all taken.
            if attempt < MAX_PROPOSALS:
                config = self.propose(context, rng, fixed)
            else:
                config = random_config(self._space, rng, fixed)
            if config_key(config) not in taken:
                break
        study._storage.set_trial_system_attr(trial._trial_id, PLANNED_BY, self.tag)
        return config
