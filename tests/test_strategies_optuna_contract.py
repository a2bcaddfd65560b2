"""Optuna's own sampler contract, run against every registered strategy.

``optuna.testing.pytest_samplers.BasicSamplerTestCase`` is the test class Optuna's built-in
samplers inherit through a parametrized ``sampler`` fixture; finesweep's strategies inherit it
the same way. Its trials use parameters (``x``, ``y``, ...) outside the space a strategy was
built for, so this also covers how a strategy treats names and ranges it does not know.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
import pytest
from finesweep.search.space import FloatParam, IntParam, SearchSpace
from finesweep.search.strategies import STRATEGIES, make_sampler
from optuna.testing.pytest_samplers import BasicSamplerTestCase

optuna.logging.set_verbosity(optuna.logging.ERROR)

# Names the contract's objectives also use (with other ranges), so both the planned path and
# the fallback for unknown names or ranges are exercised. Finite for `grid`.
SPACE = SearchSpace(params=(FloatParam("x", 0.0, 10.0, step=0.5), IntParam("y", -1, 1)))


@pytest.fixture(params=sorted(STRATEGIES))
def strategy(request) -> str:
    return request.param


def _factory(strategy: str) -> Callable[[], optuna.samplers.BaseSampler]:
    def build() -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return make_sampler(strategy, SPACE, {}, seed=0)

    return build


# The base class declares `sampler` as a fixture of its own, so it is overridden in the class
# (a module-level fixture would be shadowed).
class TestOptunaBasicContract(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self, strategy: str) -> Callable[[], optuna.samplers.BaseSampler]:
        return _factory(strategy)
