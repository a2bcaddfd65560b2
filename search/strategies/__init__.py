"""Search strategies: each is a factory returning an Optuna sampler, one file each.

A factory takes the parsed :class:`~search.space.SearchSpace` plus keyword-only options and
ends with ``seed``; its signature is the option schema that spec validation checks against.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search.strategies.global_tpe import make_global_sampler
from search.strategies.random_search import make_random_sampler

if TYPE_CHECKING:
    import optuna

    from search.space import SearchSpace

SamplerFactory = Callable[..., "optuna.samplers.BaseSampler"]


@dataclass(frozen=True)
class Strategy:
    name: str
    factory: SamplerFactory

    @property
    def options(self) -> dict[str, Any]:
        """Option name -> default, read from the factory's keyword-only arguments."""
        return {
            name: p.default
            for name, p in inspect.signature(self.factory).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "seed"
        }


STRATEGIES: dict[str, Strategy] = {
    "global": Strategy("global", make_global_sampler),
    "random": Strategy("random", make_random_sampler),
}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known strategies: {', '.join(sorted(STRATEGIES))}") from None


def check_options(name: str, options: Mapping[str, Any], space: SearchSpace) -> list[tuple[str, str, str]]:
    """Problems with ``options`` as (option, expected, found); the option names are checked
    by the caller, here the values are checked against the defaults' types."""
    problems = []
    defaults = get_strategy(name).options
    for key, value in options.items():
        default = defaults.get(key)
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok, expected = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        else:
            ok, expected = True, ""
        if not ok:
            problems.append((key, expected, repr(value)))
    return problems


def make_sampler(name: str, space: SearchSpace, options: Mapping[str, Any],
                 seed: int | None) -> optuna.samplers.BaseSampler:
    return get_strategy(name).factory(space, seed=seed, **options)
