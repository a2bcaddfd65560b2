"""`local`: trust-region refinement around an incumbent (a start point or the best trial so far).

Each proposal is a Gaussian step from the incumbent in the unit-scaled space (log scale for log
parameters, rounded to int/step grids), categoricals kept except with a small probability, and a
parameter inactive at the incumbent drawn afresh when it becomes active. The step size (the
trust region's radius) is replayed from the study's trials, never kept in memory: it doubles
after SUCCESS_TOLERANCE improving proposals in a row, halves after FAILURE_TOLERANCE (at least
the number of numeric parameters) failures in a row. Once it falls below MIN_RADIUS the region
has converged on a local optimum and the search restarts, as TuRBO does: ``n_startup_trials``
fresh random draws, then a new region around the best of them (measured on functions with many
local minima in benchmarks/results/strategies.md); within `auto`, whose exploration already chose
the basin, the region re-centres on the best instead. Chosen over CMA-ES with a small sigma0 by
measurement (benchmarks/results/strategies.md, refinement table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import optuna
from finesweep.search.space import CategoricalParam, FloatParam, IntParam, SearchSpace
from finesweep.search.spec.typed import Says, number_type
from finesweep.search.strategies._planning import (
    Config,
    ConfigKey,
    Observed,
    PlannedSampler,
    build,
    history,
    perturb,
    random_config,
    random_value,
)
from optuna.trial import FrozenTrial

START_FROM_EXPECTED = "a path to an exported best.yaml or a mapping of parameter values"
# The trust region's rules, after TuRBO (Eriksson et al., 2019), with the values the refinement
# benchmark measured (benchmarks/results/strategies.md). Improving twice in a row, the region
# may be too small to matter: it doubles.
SUCCESS_TOLERANCE = 2
# Failing four times in a row (or once per numeric parameter, if more), it overshoots: it halves.
FAILURE_TOLERANCE = 4
# A step under a thousandth of each range changes nothing a metric can tell: restart elsewhere.
MIN_RADIUS = 1e-3


def read_start_point(start_from: Mapping[str, Any] | None,
                     space: SearchSpace) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """The incumbent given by ``start_from`` (parameter values; the spec has already read a
    best.yaml named there) and every problem with it as (option, expected, found)."""
    if start_from is None:
        return {}, []
    if not isinstance(start_from, Mapping):
        return {}, [("start_from", START_FROM_EXPECTED, repr(start_from))]
    values = dict(start_from)
    problems = []
    for name, value in values.items():
        if name not in space.names:
            problems.append((f"start_from.{name}", f"a searched parameter ({', '.join(space.names)})",
                             f"unknown parameter {name!r}"))
        elif not _fits(space[name], value):
            problems.append((f"start_from.{name}", _describe_range(space[name]), repr(value)))
    return space.active_subset({k: v for k, v in values.items() if k in space.names}), problems


def _fits(param: FloatParam | IntParam | CategoricalParam, value: Any) -> bool:
    if isinstance(param, CategoricalParam):
        return value in param.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(param, IntParam) and not float(value).is_integer():
        return False
    return param.low <= value <= param.high


def _describe_range(param: FloatParam | IntParam | CategoricalParam) -> str:
    if isinstance(param, CategoricalParam):
        return f"one of {list(param.choices)}"
    kind = "an integer" if isinstance(param, IntParam) else "a number"
    return f"{kind} in [{param.low}, {param.high}]"


@dataclass(frozen=True)
class TrustRegion:
    center: Mapping[str, Any] | None
    radius: float
    exact: bool  # Evaluate the start point itself before stepping away from it.


class LocalSampler(PlannedSampler):
    tag = "local"

    def __init__(self, space: SearchSpace, *, start_from: Mapping[str, Any] | None = None,
                 radius: float = 0.05, mutation_prob: float = 0.1, n_startup_trials: int = 10,
                 restarts: bool = True, seed: int | None = None) -> None:
        super().__init__(space, seed)
        # `auto` refines what its exploration found: a collapsed region re-centres on the best.
        self._restarts = restarts
        self._start = dict(start_from or {})
        self._radius = radius
        numeric = sum(not isinstance(p, CategoricalParam) for p in space.params)
        self._failure_tolerance = max(FAILURE_TOLERANCE, numeric)
        self._mutation_prob = mutation_prob
        self._n_startup_trials = n_startup_trials

    def replay(self, observed: list[Observed]) -> tuple[Observed | None, float, int]:
        """The region's incumbent and radius after the given trials, in trial-number order, and
        how many random draws of a restart are still due.

        A region whose radius has collapsed has converged on a local optimum: as TuRBO does, the
        search restarts with a fresh random design (``n_startup_trials`` draws) and refines around
        the best of it. The sweep's best stays in the study; only the region starts over."""
        incumbent: Observed | None = None
        radius, successes, failures, fresh = self._radius, 0, 0, 0
        for obs in observed:
            if fresh and obs.planned_by == self.tag:
                fresh -= 1
                if incumbent is None or obs.loss < incumbent.loss:
                    incumbent = obs
                continue
            improved = incumbent is None or obs.loss < incumbent.loss
            if obs.planned_by == self.tag and incumbent is not None:
                successes, failures = (successes + 1, 0) if improved else (0, failures + 1)
                if successes >= SUCCESS_TOLERANCE:
                    radius, successes = min(2 * radius, 0.5), 0
                if failures >= self._failure_tolerance:
                    radius, failures = radius / 2, 0
                if radius < MIN_RADIUS and self._restarts:
                    radius, incumbent, fresh = self._radius, None, self._n_startup_trials
                    continue
                if radius < MIN_RADIUS:
                    radius = self._radius
            if improved:
                incumbent = obs
        return incumbent, radius, fresh

    def prepare(self, study: optuna.Study, trial: FrozenTrial, taken: set[ConfigKey]) -> TrustRegion:
        observed = history(study, self._start if len(study.directions) > 1 else None)
        incumbent, radius, fresh = self.replay(observed)
        if self._start:
            started = any(all(t.params.get(k) == v for k, v in self._start.items())
                          for t in study.get_trials(deepcopy=False) if t.number != trial.number)
            if not started:
                return TrustRegion(self._start, radius, exact=True)
            if incumbent is None and not fresh:
                return TrustRegion(self._start, radius, exact=False)
        elif len(observed) < self._n_startup_trials:
            return TrustRegion(None, radius, exact=False)
        if fresh or incumbent is None:
            return TrustRegion(None, radius, exact=False)
        return TrustRegion(incumbent.params, radius, exact=False)

    def propose(self, context: TrustRegion, rng: np.random.Generator, fixed: Mapping[str, Any]) -> Config:
        if context.center is None:
            return random_config(self._space, rng, fixed)
        if context.exact:
            # Everything given is used as it is; missing active parameters are drawn.
            center = context.center
            return build(self._space, lambda p, _: center[p.name] if p.name in center else random_value(p, rng),
                         fixed)
        return perturb(self._space, context.center, context.radius, self._mutation_prob, rng, fixed)


StartFrom = Annotated[str | dict[str, Any] | None, Says(START_FROM_EXPECTED, for_type=True)]
UnitInterval = Annotated[number_type(float, low=0, high=1), Says("a number in [0, 1]")]


def make_local_sampler(space: SearchSpace, *, start_from: StartFrom = None,
                       radius: UnitInterval = 0.05, mutation_prob: UnitInterval = 0.1, n_startup_trials: int = 10,
                       seed: int | None = None) -> optuna.samplers.BaseSampler:
    """Refine around ``start_from`` (a best.yaml path or a mapping of values, evaluated first)
    or, without it, around the best trial after ``n_startup_trials`` random ones. ``radius`` is
    the first step size as a fraction of each range; ``mutation_prob`` the chance that a
    categorical changes."""
    start, problems = read_start_point(start_from, space)
    if problems:
        raise ValueError("invalid `start_from` for strategy local: "
                         + "; ".join(f"{key}: expected {expected}, found {found}"
                                     for key, expected, found in problems))
    return LocalSampler(space, start_from=start, radius=radius, mutation_prob=mutation_prob,
                        n_startup_trials=n_startup_trials, seed=seed)


def check_local_options(space: SearchSpace, options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``start_from`` against the space (its values' types are the signature's to check)."""
    return list(read_start_point(options.get("start_from"), space)[1])
