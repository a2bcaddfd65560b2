"""`annealing`: simulated annealing whose current point is replayed from the study's trials.

Every COMPLETE trial, in trial-number order, is a move from the current point: an improvement is
always accepted, a worse point with the Metropolis probability exp(-delta / T). The temperature
follows the trial count, T_k = initial_temperature * cooling ** k, and delta is the loss
difference divided by the spread of the losses seen (their median absolute deviation), so one
temperature suits any metric's scale. The uniform draw that decides each acceptance is keyed by
the seed and the trial number, so the replay gives the same current point in every process.
Proposals step from the current point with a radius that shrinks with sqrt(T).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import optuna
from finesweep.search.space import SearchSpace
from finesweep.search.spec.typed import Says, number_type
from finesweep.search.strategies._planning import (
    Config,
    ConfigKey,
    Observed,
    PlannedSampler,
    history,
    perturb,
    random_config,
)
from optuna.trial import FrozenTrial

ACCEPT_SALT = 1  # Keeps the acceptance draws apart from the proposal draws of the same trial.
MIN_RADIUS = 0.01
# Random trials before the walk starts from the best of them; few, so that a short sweep spends
# most of its trials walking.
N_STARTUP_TRIALS = 5
# A categorical changes twice as often as in `local` (0.1): annealing explores while it is hot.
MUTATION_PROB = 0.2


@dataclass(frozen=True)
class Walk:
    current: Observed | None
    radius: float


class AnnealingSampler(PlannedSampler):
    tag = "annealing"

    def __init__(self, space: SearchSpace, *, initial_temperature: float = 1.0, cooling: float = 0.95,
                 radius: float = 0.1, seed: int | None = None) -> None:
        super().__init__(space, seed)
        self._t0 = initial_temperature
        self._cooling = cooling
        self._radius = radius

    def replay(self, observed: list[Observed]) -> Observed | None:
        if not observed:
            return None
        losses = np.array([o.loss for o in observed])
        spread = float(np.median(np.abs(losses - np.median(losses)))) or float(np.std(losses)) or 1.0
        # The walk starts from the best of the random start-up trials.
        current = min(observed[:N_STARTUP_TRIALS], key=lambda o: o.loss)
        for k, obs in enumerate(observed[N_STARTUP_TRIALS:], start=1):
            delta = (obs.loss - current.loss) / spread
            temperature = self._t0 * self._cooling ** k
            if delta <= 0 or self.uniform(obs.number, ACCEPT_SALT) < math.exp(-delta / temperature):
                current = obs
        return current

    def prepare(self, study: optuna.Study, trial: FrozenTrial, taken: set[ConfigKey]) -> Walk:
        observed = history(study)
        if len(observed) < N_STARTUP_TRIALS:
            return Walk(None, self._radius)
        steps = len(observed) - N_STARTUP_TRIALS
        radius = max(MIN_RADIUS, self._radius * math.sqrt(self._cooling ** steps))
        return Walk(self.replay(observed), radius)

    def propose(self, context: Walk, rng: np.random.Generator, fixed: Mapping[str, Any]) -> Config:
        if context.current is None:
            return random_config(self._space, rng, fixed)
        return perturb(self._space, context.current.params, context.radius, MUTATION_PROB, rng, fixed)


Temperature = number_type(float, low=0, low_open=True)
# A share of what there was: more than none, at most all of it.
Fraction = Annotated[number_type(float, low=0, high=1, low_open=True), Says("a number in (0, 1]")]


def make_annealing_sampler(space: SearchSpace, *, initial_temperature: Temperature = 1.0,
                           cooling: Fraction = 0.95, radius: Fraction = 0.1,
                           seed: int | None = None) -> optuna.samplers.BaseSampler:
    """Simulated annealing: ``cooling`` per finished trial from ``initial_temperature``;
    ``radius`` is the first step size as a fraction of each range (it shrinks as it cools)."""
    return AnnealingSampler(space, initial_temperature=initial_temperature, cooling=cooling,
                            radius=radius, seed=seed)
