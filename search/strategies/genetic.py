"""`genetic`: a steady-state genetic algorithm whose population is the study's best trials.

The population is never stored: it is the ``population_size`` best COMPLETE trials, read from
the study for every child, so a resumed or distributed sweep breeds from the same parents. Each
child comes from two parents picked by binary tournament, blend crossover on the unit-scaled
numeric genes (a random parent's value for categoricals), then mutation of each gene with
probability ``mutation_prob`` (1 / number of parameters by default). A gene that neither parent
has (a conditional parameter inactive in both) is drawn afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
import optuna
from finesweep.search.space import CategoricalParam, Param, SearchSpace
from finesweep.search.spec.typed import Says, number_type
from finesweep.search.strategies._planning import (
    Config,
    ConfigKey,
    Observed,
    PlannedSampler,
    build,
    from_unit,
    history,
    random_config,
    random_value,
    to_unit,
)
from optuna.trial import FrozenTrial

# Blend crossover reaches this fraction of the parents' distance beyond each parent (BLX-alpha).
BLEND_ALPHA = 0.25
# Standard deviation of a numeric mutation, as a fraction of the range.
MUTATION_SCALE = 0.1


class GeneticSampler(PlannedSampler):
    tag = "genetic"

    def __init__(self, space: SearchSpace, *, population_size: int = 8,
                 mutation_prob: float | None = None, seed: int | None = None) -> None:
        super().__init__(space, seed)
        self._population_size = population_size
        self._mutation_prob = mutation_prob if mutation_prob is not None else 1.0 / max(1, len(space.params))

    def prepare(self, study: optuna.Study, trial: FrozenTrial,
                taken: set[ConfigKey]) -> list[Observed] | None:
        observed = history(study)
        if len(observed) < self._population_size:
            return None  # The first generation is random.
        return sorted(observed, key=lambda o: (o.loss, o.number))[:self._population_size]

    def propose(self, context: list[Observed] | None, rng: np.random.Generator,
                fixed: Mapping[str, Any]) -> Config:
        if context is None:
            return random_config(self._space, rng, fixed)
        first, second = self._tournament(context, rng), self._tournament(context, rng)

        def gene(param: Param, _: Config) -> Any:
            values = [p.params[param.name] for p in (first, second) if param.name in p.params]
            if not values or rng.random() < self._mutation_prob:
                return self._mutate(param, values[0] if values else None, rng)
            if isinstance(param, CategoricalParam) or len(values) == 1:
                return values[int(rng.integers(len(values)))]
            a, b = to_unit(param, values[0]), to_unit(param, values[1])
            weight = rng.uniform(-BLEND_ALPHA, 1 + BLEND_ALPHA)
            return from_unit(param, a + weight * (b - a))

        return build(self._space, gene, fixed)

    @staticmethod
    def _tournament(population: list[Observed], rng: np.random.Generator) -> Observed:
        # The population is sorted best first, so the lower index wins.
        return population[int(rng.integers(len(population), size=2).min())]

    @staticmethod
    def _mutate(param: Param, value: Any, rng: np.random.Generator) -> Any:
        if value is None or isinstance(param, CategoricalParam):
            return random_value(param, rng)
        return from_unit(param, to_unit(param, value) + MUTATION_SCALE * rng.standard_normal())


PopulationSize = number_type(int, low=2)
# Each gene's chance to mutate; null (or left out): 1 / number of parameters.
MutationProb = Annotated[number_type(float, low=0, high=1) | None,
                         Says("a number in [0, 1], or null for 1 / number of parameters", for_type=True)]


def make_genetic_sampler(space: SearchSpace, *, population_size: PopulationSize = 8,
                         mutation_prob: MutationProb = None,
                         seed: int | None = None) -> optuna.samplers.BaseSampler:
    """``population_size`` random trials first, then children of the best that many trials.
    ``mutation_prob`` is each gene's chance to mutate (0: never); None means 1 / number of
    parameters, about one mutated gene per child."""
    return GeneticSampler(space, population_size=population_size, mutation_prob=mutation_prob, seed=seed)
