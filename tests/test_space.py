"""Define-by-run sampling of the typed search space."""

from __future__ import annotations

import optuna
import pytest
from finesweep.search.space import INACTIVE, CategoricalParam, Condition, FloatParam, IntParam, SearchSpace

SPACE = SearchSpace(
    params=(
        FloatParam("learning_rate", 1e-4, 1e-1, log=True),
        CategoricalParam("optimizer", ("adam", "sgd")),
        FloatParam("momentum", 0.5, 0.99, when=(Condition("optimizer", ("sgd",)),)),
        IntParam("channels", 8, 64, step=8),
        FloatParam("dropout", 0.0, 0.5, step=0.1),
    ),
    fixed={"batch_size": 64},
)


def _samples(space: SearchSpace, count: int, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(count):
        trial = study.ask()
        drawn.append(space.sample(trial))
        study.tell(trial, 0.0)
    return drawn


def test_conditional_parameter_only_when_its_condition_holds():
    for sampled in _samples(SPACE, 60):
        assert ("momentum" in sampled) == (sampled["optimizer"] == "sgd")


def test_bounds_steps_and_types_are_respected():
    for sampled in _samples(SPACE, 60):
        assert 1e-4 <= sampled["learning_rate"] <= 1e-1
        assert sampled["channels"] in range(8, 65, 8) and isinstance(sampled["channels"], int)
        assert min(abs(sampled["dropout"] - k / 10) for k in range(6)) < 1e-9


def test_with_inactive_marks_every_missing_parameter():
    full = SPACE.with_inactive({"learning_rate": 0.01, "optimizer": "adam", "channels": 8, "dropout": 0.1})
    assert list(full) == list(SPACE.names)
    assert full["momentum"] == INACTIVE


def test_active_subset_drops_values_whose_condition_fails():
    values = {"learning_rate": 0.01, "optimizer": "adam", "momentum": 0.9, "channels": 8, "dropout": 0.0}
    assert "momentum" not in SPACE.active_subset(values)
    assert SPACE.active_subset({**values, "optimizer": "sgd"})["momentum"] == 0.9


def test_grid_values_are_finite_only_with_steps():
    assert SPACE["channels"].grid_values() == (8, 16, 24, 32, 40, 48, 56, 64)
    assert SPACE["dropout"].grid_values() == pytest.approx((0.0, 0.1, 0.2, 0.3, 0.4, 0.5))
    assert SPACE["learning_rate"].grid_values() is None
