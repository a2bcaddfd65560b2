"""Search strategies: each is a factory returning an Optuna sampler, one file each.

A factory takes the parsed :class:`~search.space.SearchSpace` plus keyword-only options and
ends with ``seed``; its signature is the option schema that spec validation checks against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from finesweep.search.spec.typed import options_of, refusals
from finesweep.search.strategies.annealing import make_annealing_sampler
from finesweep.search.strategies.auto import PHASE_ATTR, make_auto_sampler
from finesweep.search.strategies.genetic import make_genetic_sampler
from finesweep.search.strategies.global_tpe import ENGINE_ATTR, make_global_sampler
from finesweep.search.strategies.grid_search import check_grid_options, make_grid_sampler
from finesweep.search.strategies.local_search import check_local_options, make_local_sampler
from finesweep.search.strategies.random_search import make_random_sampler

if TYPE_CHECKING:
    import optuna
    from finesweep.search.space import SearchSpace

__all__ = ["ENGINE_ATTR", "PHASE_ATTR", "STRATEGIES", "OptionCheck", "SamplerFactory", "Strategy", "check_options",
           "get_strategy", "make_sampler"]

SamplerFactory = Callable[..., "optuna.samplers.BaseSampler"]
# Strategy-specific checks of option values against the space, as (option, expected, found);
# option "" means the problem is with choosing this strategy for this space at all.
OptionCheck = Callable[["SearchSpace", Mapping[str, Any]], list[tuple[str, str, str]]]


@dataclass(frozen=True)
class Strategy:
    name: str
    factory: SamplerFactory
    check: OptionCheck | None = None

    @property
    def options(self) -> dict[str, Any]:
        """Option name -> default, read from the factory's keyword-only arguments."""
        return options_of(self.factory)


STRATEGIES: dict[str, Strategy] = {
    "global": Strategy("global", make_global_sampler),
    "random": Strategy("random", make_random_sampler),
    "local": Strategy("local", make_local_sampler, check_local_options),
    "genetic": Strategy("genetic", make_genetic_sampler),
    "annealing": Strategy("annealing", make_annealing_sampler),
    "grid": Strategy("grid", make_grid_sampler, check_grid_options),
    "auto": Strategy("auto", make_auto_sampler),
}
# The heuristic that beat random search on every function of the suite (benchmarks/results/
# strategies.md: by 30% or more at 100 and 200 trials). `annealing` does better on average but
# walks into the wrong basin of a deceptive function (Schwefel-4: no better than random).
STRATEGIES["heuristic"] = Strategy("heuristic", make_genetic_sampler)


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known strategies: {', '.join(sorted(STRATEGIES))}") from None


def check_options(name: str, options: Mapping[str, Any], space: SearchSpace) -> list[tuple[str, str, str]]:
    """Problems with ``options`` as (option, expected, found); the option names are checked
    by the caller, here the values: against the factory's signature (types and bounds, by
    jsonargparse), then by the strategy's own check against the space (a `start_from` point,
    whether the space suits it). An option of "" means the problem is with the strategy
    itself (e.g. `grid` on an infinite space)."""
    strategy = get_strategy(name)
    typed, refused = refusals(strategy.factory, options, found=repr, whole_floats=False)
    defaults = strategy.options
    # A plain type mistake first (an option whose default says its type), in the order written;
    # then the checks against the space; then the rest (bounds, an option that may be null) in
    # the signature's order.
    plain = [r for r in refused if not r.out_of_range and defaults[r.key] is not None]
    rest = sorted((r for r in refused if r not in plain), key=lambda r: list(defaults).index(r.key))
    problems = [(r.key, r.expected, r.found) for r in plain]
    if strategy.check is not None:
        problems.extend(strategy.check(space, typed))
    return problems + [(r.key, r.expected, r.found) for r in rest]


def make_sampler(name: str, space: SearchSpace, options: Mapping[str, Any],
                 seed: int | None) -> optuna.samplers.BaseSampler:
    return get_strategy(name).factory(space, seed=seed, **options)
