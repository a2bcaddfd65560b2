"""The benchmark suite's own correctness: every function has the optimum it claims, and the
expensive-trial mode records its simulated durations (nothing sleeps). No training; seconds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest

optuna.logging.set_verbosity(optuna.logging.ERROR)


# --------------------------------------------------------------------------- benchmark suite


def _argmin(name: str, dim: int) -> np.ndarray | None:
    known: dict[str, Any] = {
        "Sphere": np.zeros(dim), "Sum-Squares": np.zeros(dim), "Zakharov": np.zeros(dim),
        "Rosenbrock": np.ones(dim), "Levy": np.ones(dim), "Rastrigin": np.zeros(dim), "Ackley": np.zeros(dim),
        "Griewank": np.zeros(dim), "Powell": np.zeros(dim), "Drop-Wave": np.zeros(dim), "Booth": np.array([1.0, 3.0]),
        "Goldstein-Price": np.array([0.0, -1.0]), "Branin": np.array([math.pi, 2.275]),
        "Trid": np.array([i * (dim + 1 - i) for i in range(1, dim + 1)], dtype=float),
        "Dixon-Price": np.array([2.0 ** (-(2 ** i - 2) / 2 ** i) for i in range(1, dim + 1)]),
        "Schwefel": np.full(dim, 420.968746227503), "Styblinski-Tang": np.full(dim, -2.903534027771178),
        "Hartmann": (np.array([0.114614, 0.555649, 0.852547]) if dim == 3 else
                     np.array([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])),
    }
    return known.get(name)


def test_every_benchmark_function_has_the_optimum_it_claims():
    from finesweep.search.strategies._planning import random_config

    from benchmarks.functions import FUNCTIONS

    assert len({f.name for f in FUNCTIONS.values() if f.numeric and not f.noise}) >= 12
    assert sum(not f.numeric and not f.noise for f in FUNCTIONS.values()) >= 2
    rng = np.random.default_rng(0)
    for function in FUNCTIONS.values():
        values = [function.evaluate(random_config(function.space, rng, {})) for _ in range(300)]
        assert min(values) >= function.optimum - 1e-9, function.name
        if function.numeric:
            name, dim = function.name.split(" ")[0].rsplit("-", 1)
            x = _argmin(name, int(dim))
            if x is not None:
                at = function.evaluate({f"x{i}": v for i, v in enumerate(x)})
                assert at == pytest.approx(function.optimum, abs=1e-4), function.name


def test_benchmark_records_simulated_trial_durations():
    from benchmarks.functions import FUNCTIONS
    from benchmarks.strategies import run

    function = FUNCTIONS["Hartmann-6 (noisy)"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    regrets, _, _ = run(study, function, 5, seed=0, trial_seconds=60.0)
    assert [t.duration.total_seconds() for t in study.trials] == pytest.approx([60.0] * 5)
    # Regret is read on the noise-free value of the best observed trial.
    best = min(study.trials, key=lambda t: t.value)
    assert regrets[-1] == pytest.approx(function.evaluate(best.params) - function.optimum)
    assert best.value != pytest.approx(function.evaluate(best.params))
