"""Test functions for the strategy benchmarks: the standard families, mixed spaces and noise.

Each :class:`Function` is a search space, a noise-free objective and its known optimum. The
numeric ones are the usual benchmark functions (definitions and domains as in Surjanovic &
Bingham's Virtual Library of Simulation Experiments), chosen across the families: bowl-shaped,
plate-shaped, valley-shaped, many local minima, steep ridges and drops, separable and not, 2 to
10 dimensions. The mixed ones imitate tuning a model: categorical choices, log-scaled and integer
ranges, parameters active only under one choice. A noisy variant adds Gaussian noise of a fixed
standard deviation to the observed value; its regret is read on the noise-free value.

``split`` keeps the strategies honest: they were developed on the "dev" functions and checked
on the "check" ones, and no strategy names or branches on any function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from finesweep.search.space import CategoricalParam, Condition, FloatParam, IntParam, SearchSpace


@dataclass(frozen=True)
class Function:
    name: str
    family: str
    space: SearchSpace
    evaluate: Callable[[Mapping[str, Any]], float]  # Noise-free.
    optimum: float
    noise: float = 0.0  # Standard deviation of the Gaussian noise on the observed value.
    split: str = "check"

    @property
    def numeric(self) -> bool:
        return not self.space.is_conditional and all(isinstance(p, (FloatParam, IntParam))
                                                     for p in self.space.params)


def _vector(fn: Callable[[np.ndarray], float], dim: int) -> Callable[[Mapping[str, Any]], float]:
    def evaluate(params: Mapping[str, Any]) -> float:
        return float(fn(np.array([params[f"x{i}"] for i in range(dim)], dtype=float)))

    return evaluate


def _box(dim: int, low: float | list[float], high: float | list[float]) -> SearchSpace:
    lows = low if isinstance(low, list) else [low] * dim
    highs = high if isinstance(high, list) else [high] * dim
    return SearchSpace(params=tuple(FloatParam(f"x{i}", lows[i], highs[i]) for i in range(dim)))


def numeric(name: str, family: str, fn: Callable[[np.ndarray], float], dim: int, low: float | list[float],
            high: float | list[float], optimum: float, split: str = "check") -> Function:
    return Function(f"{name}-{dim}", family, _box(dim, low, high), _vector(fn, dim), optimum, split=split)


# --------------------------------------------------------------------------- numeric


def sphere(x: np.ndarray) -> float:
    return float((x ** 2).sum())


def sum_squares(x: np.ndarray) -> float:
    return float((np.arange(1, len(x) + 1) * x ** 2).sum())


def rosenbrock(x: np.ndarray) -> float:
    return float((100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum())


def dixon_price(x: np.ndarray) -> float:
    i = np.arange(2, len(x) + 1)
    return float((x[0] - 1) ** 2 + (i * (2 * x[1:] ** 2 - x[:-1]) ** 2).sum())


def powell(x: np.ndarray) -> float:
    a, b, c, d = x[0::4], x[1::4], x[2::4], x[3::4]
    return float(((a + 10 * b) ** 2 + 5 * (c - d) ** 2 + (b - 2 * c) ** 4 + 10 * (a - d) ** 4).sum())


def trid(x: np.ndarray) -> float:
    return float(((x - 1) ** 2).sum() - (x[1:] * x[:-1]).sum())


def zakharov(x: np.ndarray) -> float:
    s = (0.5 * np.arange(1, len(x) + 1) * x).sum()
    return float((x ** 2).sum() + s ** 2 + s ** 4)


def styblinski_tang(x: np.ndarray) -> float:
    return float(0.5 * (x ** 4 - 16 * x ** 2 + 5 * x).sum())


def levy(x: np.ndarray) -> float:
    w = 1 + (x - 1) / 4
    middle = ((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:-1] + 1) ** 2)).sum()
    return float(np.sin(np.pi * w[0]) ** 2 + middle + (w[-1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[-1]) ** 2))


def rastrigin(x: np.ndarray) -> float:
    return float(10 * len(x) + (x ** 2 - 10 * np.cos(2 * np.pi * x)).sum())


def ackley(x: np.ndarray) -> float:
    return float(-20 * math.exp(-0.2 * math.sqrt((x ** 2).mean())) - math.exp(np.cos(2 * math.pi * x).mean())
                 + 20 + math.e)


def griewank(x: np.ndarray) -> float:
    return float(1 + (x ** 2).sum() / 4000 - np.prod(np.cos(x / np.sqrt(np.arange(1, len(x) + 1)))))


def schwefel(x: np.ndarray) -> float:
    return float(418.9829 * len(x) - (x * np.sin(np.sqrt(np.abs(x)))).sum())


def michalewicz(x: np.ndarray) -> float:
    i = np.arange(1, len(x) + 1)
    return float(-(np.sin(x) * np.sin(i * x ** 2 / np.pi) ** 20).sum())


def six_hump_camel(x: np.ndarray) -> float:
    a, b = x
    return float((4 - 2.1 * a ** 2 + a ** 4 / 3) * a ** 2 + a * b + (-4 + 4 * b ** 2) * b ** 2)


def booth(x: np.ndarray) -> float:
    return float((x[0] + 2 * x[1] - 7) ** 2 + (2 * x[0] + x[1] - 5) ** 2)


def goldstein_price(x: np.ndarray) -> float:
    a, b = x
    first = 1 + (a + b + 1) ** 2 * (19 - 14 * a + 3 * a ** 2 - 14 * b + 6 * a * b + 3 * b ** 2)
    second = 30 + (2 * a - 3 * b) ** 2 * (18 - 32 * a + 12 * a ** 2 + 48 * b - 36 * a * b + 27 * b ** 2)
    return float(first * second)


def drop_wave(x: np.ndarray) -> float:
    r2 = float((x ** 2).sum())
    return -(1 + math.cos(12 * math.sqrt(r2))) / (0.5 * r2 + 2)


def branin(x: np.ndarray) -> float:
    x1, x2 = x
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return float((x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10)


HARTMANN3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
HARTMANN3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
HARTMANN6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                        [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
HARTMANN6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                               [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann3(x: np.ndarray) -> float:
    return float(-HARTMANN_ALPHA @ np.exp(-(HARTMANN3_A * (x - HARTMANN3_P) ** 2).sum(axis=1)))


def hartmann6(x: np.ndarray) -> float:
    return float(-HARTMANN_ALPHA @ np.exp(-(HARTMANN6_A * (x - HARTMANN6_P) ** 2).sum(axis=1)))


# --------------------------------------------------------------------------- mixed


MIXED_SPACE = SearchSpace(params=(
    CategoricalParam("optimizer", ("adam", "sgd", "rmsprop")),
    IntParam("width", 1, 256, log=True),
    FloatParam("lr", 1e-5, 1.0, log=True),
    FloatParam("momentum", 0.0, 0.99, when=(Condition("optimizer", ("sgd",)),)),
))


def mixed(p: Mapping[str, Any]) -> float:
    """Like tuning a network: the best learning rate grows with width (an interaction), sgd
    with momentum 0.9 beats adam by 0.3 and rmsprop by 0.6. Optimum 0 at sgd, width 16,
    lr 1e-3, momentum 0.9."""
    log_width = math.log2(p["width"])
    value = (math.log10(p["lr"]) - (-4 + 0.25 * log_width)) ** 2 + 0.1 * (log_width - 4) ** 2
    if p["optimizer"] == "sgd":
        return value + 4 * (p["momentum"] - 0.9) ** 2
    return value + (0.3 if p["optimizer"] == "adam" else 0.6)


def _when(model: str) -> tuple[Condition, ...]:
    return (Condition("model", (model,)),)


PIPELINE_SPACE = SearchSpace(params=(
    CategoricalParam("model", ("linear", "forest", "boosting")),
    CategoricalParam("scaler", ("none", "standard", "robust")),
    FloatParam("l2", 1e-6, 1e2, log=True, when=_when("linear")),
    IntParam("trees", 10, 1000, log=True, when=_when("forest")),
    IntParam("depth", 2, 32, when=_when("forest")),
    FloatParam("learning_rate", 1e-3, 1.0, log=True, when=_when("boosting")),
    IntParam("rounds", 10, 2000, log=True, when=_when("boosting")),
    FloatParam("subsample", 0.3, 1.0, when=_when("boosting")),
))


def pipeline(p: Mapping[str, Any]) -> float:
    """Choosing and tuning a model: each model has its own parameters. Boosting is best
    (optimum 0) once its learning rate and rounds are traded off (lr x rounds ~ 10) with a
    subsample of 0.8; a tuned forest comes within 0.05 and linear within 0.2. Scaling matters
    to linear only."""
    scaler = {"none": 0.3, "standard": 0.0, "robust": 0.05}[p["scaler"]]
    if p["model"] == "linear":
        return 0.2 + scaler + 0.05 * (math.log10(p["l2"]) + 2) ** 2
    if p["model"] == "forest":
        return (0.05 + 0.02 * (math.log10(p["trees"]) - 2.5) ** 2
                + 0.002 * (p["depth"] - 12) ** 2 + 0.1 * scaler)
    trade = math.log10(p["learning_rate"] * p["rounds"]) - 1
    return 0.3 * trade ** 2 + 0.02 * (math.log10(p["rounds"]) - 2.5) ** 2 + (p["subsample"] - 0.8) ** 2


CATEGORICAL_SPACE = SearchSpace(params=(
    CategoricalParam("activation", ("relu", "gelu", "tanh", "sigmoid")),
    CategoricalParam("norm", ("batch", "layer", "none")),
    CategoricalParam("init", ("xavier", "he", "orthogonal")),
    IntParam("layers", 1, 8),
    IntParam("batch", 16, 512, step=16),
    FloatParam("dropout", 0.0, 0.6),
))


def categorical(p: Mapping[str, Any]) -> float:
    """Categorical choices that interact with each other and with the numbers: gelu with layer
    norm is best, he init suits relu-like activations, deep nets need a norm; optimum 0 at
    gelu, layer, he, 5 layers, batch 128, dropout 0.2."""
    act = {"relu": 0.1, "gelu": 0.0, "tanh": 0.3, "sigmoid": 0.6}[p["activation"]]
    norm = {"batch": 0.05, "layer": 0.0, "none": 0.2}[p["norm"]]
    if p["activation"] == "relu" and p["norm"] == "batch":
        norm = -0.05  # The classic pairing nearly matches the best.
    init = 0.0 if (p["init"] == "he") == (p["activation"] in ("relu", "gelu")) else 0.1
    depth = 0.02 * (p["layers"] - 5) ** 2 * (2.0 if p["norm"] == "none" else 1.0)
    batch = 0.05 * math.log2(p["batch"] / 128) ** 2
    return act + norm + init + depth + batch + (p["dropout"] - 0.2) ** 2


# --------------------------------------------------------------------------- the suite


def _schwefel_optimum(dim: int) -> float:
    return schwefel(np.full(dim, 420.968746227503))


_FUNCTIONS = [
    # Bowl-shaped.
    numeric("Sphere", "bowl", sphere, 8, -5.12, 5.12, 0.0, split="dev"),
    numeric("Sum-Squares", "bowl", sum_squares, 10, -10.0, 10.0, 0.0),
    numeric("Trid", "bowl", trid, 6, -36.0, 36.0, -50.0),
    numeric("Booth", "plate", booth, 2, -10.0, 10.0, 0.0),
    # Plate-shaped.
    numeric("Zakharov", "plate", zakharov, 8, -5.0, 10.0, 0.0, split="dev"),
    # Valley-shaped.
    numeric("Rosenbrock", "valley", rosenbrock, 4, -5.0, 10.0, 0.0, split="dev"),
    numeric("Dixon-Price", "valley", dixon_price, 6, -10.0, 10.0, 0.0),
    numeric("Six-Hump-Camel", "valley", six_hump_camel, 2, [-3.0, -2.0], [3.0, 2.0], -1.0316284534898774,
            split="dev"),
    numeric("Powell", "valley", powell, 8, -4.0, 5.0, 0.0),
    # Many local minima.
    numeric("Ackley", "many local minima", ackley, 5, -32.768, 32.768, 0.0, split="dev"),
    numeric("Levy", "many local minima", levy, 6, -10.0, 10.0, 0.0, split="dev"),
    numeric("Rastrigin", "many local minima", rastrigin, 6, -5.12, 5.12, 0.0),
    numeric("Griewank", "many local minima", griewank, 6, -600.0, 600.0, 0.0),
    numeric("Schwefel", "many local minima", schwefel, 4, -500.0, 500.0, _schwefel_optimum(4)),
    numeric("Drop-Wave", "many local minima", drop_wave, 2, -5.12, 5.12, -1.0),
    # Steep ridges and drops.
    numeric("Michalewicz", "steep ridges", michalewicz, 5, 0.0, math.pi, -4.687658179),
    numeric("Goldstein-Price", "steep ridges", goldstein_price, 2, -2.0, 2.0, 3.0),
    # Few local minima (the classic Bayesian-optimisation set).
    numeric("Styblinski-Tang", "few local minima", styblinski_tang, 4, -5.0, 5.0, -39.16616570377142 * 4,
            split="dev"),
    numeric("Branin", "few local minima", branin, 2, [-5.0, 0.0], [10.0, 15.0], 0.397887357729738, split="dev"),
    numeric("Hartmann", "few local minima", hartmann3, 3, 0.0, 1.0, -3.86278214782076),
    numeric("Hartmann", "few local minima", hartmann6, 6, 0.0, 1.0, -3.32236801141551, split="dev"),
    # Mixed and conditional.
    Function("Mixed-4 (cond.)", "mixed", MIXED_SPACE, mixed, 0.0, split="dev"),
    Function("Pipeline-8 (cond.)", "mixed", PIPELINE_SPACE, pipeline, 0.0),
    Function("Categorical-6", "mixed", CATEGORICAL_SPACE, categorical, 0.0, split="dev"),
]
_BY_NAME = {f.name: f for f in _FUNCTIONS}
# Noisy variants: the noise is about a tenth of a good-region spread of values.
_NOISY = [
    replace(_BY_NAME["Hartmann-6"], name="Hartmann-6 (noisy)", noise=0.05, split="dev"),
    replace(_BY_NAME["Styblinski-Tang-4"], name="Styblinski-Tang-4 (noisy)", noise=2.0, split="check"),
    replace(_BY_NAME["Mixed-4 (cond.)"], name="Mixed-4 (cond., noisy)", noise=0.05, split="check"),
]

FUNCTIONS: dict[str, Function] = {f.name: f for f in (*_FUNCTIONS, *_NOISY)}
