"""Benchmark finesweep's strategies against Optuna's stock samplers on test functions.

In-process Optuna ask/tell (no Ray, no training): every sampler runs on every function for
every seed, and the simple regret (best value found minus the known optimum) is read at each
budget. Also measured: `local` refining the best of 30 random trials (against CMA-ES started
there with a small sigma0, the alternative it was chosen over) and seconds per suggestion with
500 finished trials in a 10-parameter space. Writes benchmarks/results/strategies.md.

    python -m benchmarks.strategies            # full: budgets 50/100/200, 10 seeds (< 10 min, 2 cores)
    python -m benchmarks.strategies --quick    # budgets 50/100, 3 seeds
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import math
import multiprocessing
import os
import platform
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from finesweep.search.space import CategoricalParam, Condition, FloatParam, IntParam, SearchSpace
from finesweep.search.strategies import STRATEGIES

RESULTS = Path(__file__).resolve().parent / "results" / "strategies.md"
# `heuristic` is an alias of `annealing` and `grid` needs a finite space: neither gets its own row.
OURS = ("global", "auto", "local", "genetic", "annealing", "random")
STOCK = ("optuna TPE", "optuna CMA-ES", "optuna random")


# --------------------------------------------------------------------------- test functions


@dataclass(frozen=True)
class Function:
    name: str
    space: SearchSpace
    evaluate: Callable[[Mapping[str, Any]], float]
    optimum: float


def _box(names: str, low: float, high: float) -> SearchSpace:
    return SearchSpace(params=tuple(FloatParam(n, low, high) for n in names.split()))


def branin(p: Mapping[str, Any]) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


HARTMANN_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                       [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
HARTMANN_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                              [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(p: Mapping[str, Any]) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-HARTMANN_ALPHA @ np.exp(-(HARTMANN_A * (x - HARTMANN_P) ** 2).sum(axis=1)))


def rosenbrock4(p: Mapping[str, Any]) -> float:
    x = [p[f"x{i}"] for i in range(4)]
    return float(sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(3)))


def ackley5(p: Mapping[str, Any]) -> float:
    x = np.array([p[f"x{i}"] for i in range(5)])
    return float(-20 * math.exp(-0.2 * math.sqrt((x ** 2).mean())) - math.exp(np.cos(2 * math.pi * x).mean())
                 + 20 + math.e)


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


FUNCTIONS = {
    "Branin-2": Function("Branin-2", SearchSpace(params=(FloatParam("x1", -5, 10), FloatParam("x2", 0, 15))),
                         branin, 0.397887357729738),
    "Hartmann-6": Function("Hartmann-6", _box("x0 x1 x2 x3 x4 x5", 0, 1), hartmann6, -3.32236801141551),
    "Rosenbrock-4": Function("Rosenbrock-4", _box("x0 x1 x2 x3", -5, 10), rosenbrock4, 0.0),
    "Ackley-5": Function("Ackley-5", _box("x0 x1 x2 x3 x4", -32.768, 32.768), ackley5, 0.0),
    "Mixed-4 (cond.)": Function("Mixed-4 (cond.)", MIXED_SPACE, mixed, 0.0),
}


# --------------------------------------------------------------------------- running


def make(name: str, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    if name == "optuna TPE":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "optuna CMA-ES":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "optuna random":
        return optuna.samplers.RandomSampler(seed=seed)
    return STRATEGIES[name].factory(space, seed=seed)


def run(study: optuna.Study, function: Function, trials: int) -> tuple[list[float], float]:
    """Ask/tell ``trials`` trials; the best-so-far regret after each and seconds per suggestion."""
    regrets, best, spent = [], math.inf, 0.0
    for _ in range(trials):
        start = time.perf_counter()
        trial = study.ask()
        params = function.space.sample(trial)
        spent += time.perf_counter() - start
        value = function.evaluate(params)
        study.tell(trial, value)
        best = min(best, value)
        regrets.append(max(0.0, best - function.optimum))
    return regrets, spent / trials


def one_run(job: tuple[str, str, int, int]) -> tuple[str, str, int, list[float], float]:
    sampler_name, function_name, seed, trials = job
    _quiet()
    function = FUNCTIONS[function_name]
    study = optuna.create_study(sampler=make(sampler_name, function.space, seed))
    regrets, per_suggestion = run(study, function, trials)
    return sampler_name, function_name, seed, regrets, per_suggestion


def refine_run(job: tuple[str, str, int]) -> tuple[str, str, int, float, float]:
    """30 random trials, then 70 of the refiner from their best: (start regret, end regret)."""
    refiner, function_name, seed = job
    _quiet()
    function = FUNCTIONS[function_name]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    before, _ = run(study, function, 30)
    if refiner == "local":
        study.sampler = STRATEGIES["local"].factory(function.space, seed=seed)
    else:  # CMA-ES around the same point with a small step (sigma0 is on the unit-scaled space).
        study.sampler = optuna.samplers.CmaEsSampler(x0=study.best_params, sigma0=0.1, seed=seed)
    after, _ = run(study, function, 70)
    return refiner, function_name, seed, before[-1], after[-1]


def suggestion_seconds(name: str, finished: int = 500, timed: int = 5) -> float:
    """Seconds per suggestion once ``finished`` trials are in a 10-parameter study."""
    _quiet()
    space = SearchSpace(params=(*(FloatParam(f"f{i}", 0.0, 1.0) for i in range(6)),
                                IntParam("i0", 1, 100), IntParam("i1", 1, 1000, log=True),
                                FloatParam("lr", 1e-5, 1.0, log=True), CategoricalParam("c", ("a", "b", "c"))))
    rng = np.random.default_rng(0)
    study = optuna.create_study(sampler=make(name, space, 0))
    filler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(finished):
        trial = filler.ask()
        params = space.sample(trial)
        filler.tell(trial, sum(v for v in params.values() if isinstance(v, float)) + rng.random())
    study.add_trials(filler.trials)
    spent = 0.0
    for _ in range(timed):
        start = time.perf_counter()
        trial = study.ask()
        space.sample(trial)
        spent += time.perf_counter() - start
        study.tell(trial, rng.random())
    return spent / timed


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")


# --------------------------------------------------------------------------- report


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(median), float(q3)


def fmt(value: float) -> str:
    return f"{value:.2e}" if value and (abs(value) < 1e-2 or abs(value) >= 1e3) else f"{value:.3g}"


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, {platform.platform()}"


def versions() -> str:
    parts = [f"python {platform.python_version()}"]
    for package in ("optuna", "numpy", "cmaes"):
        try:
            parts.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{package} not installed")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="budgets 50/100 and 3 seeds")
    parser.add_argument("--seeds", type=int, help="number of seeds (default 10, 3 with --quick)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    budgets = (50, 100) if args.quick else (50, 100, 200)
    seeds = args.seeds or (3 if args.quick else 10)
    samplers = OURS + STOCK
    started = time.perf_counter()
    workers = len(os.sched_getaffinity(0))

    jobs = [(s, f, seed, budgets[-1]) for f in FUNCTIONS for seed in range(seeds) for s in samplers]
    refine_jobs = [(r, f, seed) for f in ("Branin-2", "Hartmann-6", "Rosenbrock-4", "Ackley-5", "Mixed-4 (cond.)")
                   for seed in range(seeds) for r in ("local", "CMA-ES sigma0=0.1")]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        runs = pool.map(one_run, jobs, chunksize=1)
        refines = pool.map(refine_run, refine_jobs, chunksize=1)
        speed = dict(zip(samplers, pool.map(suggestion_seconds, samplers), strict=True))

    regret: dict[tuple[str, str, int], list[float]] = {}
    per_suggestion: dict[tuple[str, str], list[float]] = {}
    for sampler_name, function_name, _seed, regrets, seconds in runs:
        for budget in budgets:
            regret.setdefault((sampler_name, function_name, budget), []).append(regrets[budget - 1])
        per_suggestion.setdefault((sampler_name, function_name), []).append(seconds)

    lines = [
        "# Strategy benchmark",
        "",
        f"Generated by `python -m benchmarks.strategies{' --quick' if args.quick else ''}` on "
        f"{datetime.date.today().isoformat()} in {time.perf_counter() - started:.0f} s.",
        "",
        f"- Versions: {versions()}",
        f"- Machine: {machine()}; {workers} worker processes",
        f"- {seeds} seeds per cell; simple regret = best value found - known optimum, "
        "shown as median [25th - 75th percentile]; lower is better.",
        "- Ours: " + ", ".join(f"`{s}`" for s in OURS) + " (`heuristic` = `annealing`); stock Optuna with "
        "default settings: TPESampler(), CmaEsSampler(), RandomSampler().",
        "- Seconds per suggestion are wall-clock (ask + define-by-run sampling) on a shared machine: "
        "compare ratios, not absolute values.",
        "",
    ]
    for function_name in FUNCTIONS:
        lines += [f"## {function_name}", "", "| sampler | " + " | ".join(f"regret @ {b}" for b in budgets)
                  + " | ms / suggestion |", "|---" * (len(budgets) + 2) + "|"]
        for sampler_name in samplers:
            cells = []
            for budget in budgets:
                q1, median, q3 = quartiles(regret[(sampler_name, function_name, budget)])
                cells.append(f"{fmt(median)} [{fmt(q1)} - {fmt(q3)}]")
            label = f"`{sampler_name}`" if sampler_name in OURS else sampler_name
            ms = 1000 * float(np.median(per_suggestion[(sampler_name, function_name)]))
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {ms:.1f} |")
        lines.append("")

    lines += ["## Targets at 100 trials", ""]
    lines += _targets(regret, seeds)

    lines += ["## `local` refining the best of 30 random trials (70 more trials)", "",
              "Measured against CMA-ES started at the same point with sigma0 = 0.1 of each range "
              "(the alternative `local` was chosen over). Regret cut = start regret / end regret "
              "(target >= 10x).", "",
              "| function | refiner | start regret | end regret | median cut | seeds cut >= 10x |",
              "|---|---|---|---|---|---|"]
    by_cell: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for refiner, function_name, _seed, start, end in refines:
        by_cell.setdefault((function_name, refiner), []).append((start, end))
    for (function_name, refiner), pairs in by_cell.items():
        cuts = [s / e if e > 0 else math.inf for s, e in pairs]
        lines.append(f"| {function_name} | {refiner} | {fmt(quartiles([s for s, _ in pairs])[1])} | "
                     f"{fmt(quartiles([e for _, e in pairs])[1])} | {fmt(float(np.median(cuts)))}x | "
                     f"{sum(c >= 10 for c in cuts)}/{len(cuts)} |")

    lines += ["", "## Seconds per suggestion with 500 finished trials, 10 parameters", "",
              "Target: <= 50 ms for every strategy.", "", "| sampler | ms / suggestion |", "|---|---|"]
    lines += [f"| {name} | {1000 * seconds:.1f} |" for name, seconds in speed.items()]
    lines += ["", f"Total run time: {time.perf_counter() - started:.0f} s.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


def _targets(regret: dict[tuple[str, str, int], list[float]], seeds: int) -> list[str]:
    def median(sampler: str, function: str, budget: int) -> float:
        return quartiles(regret[(sampler, function, budget)])[1]

    rows = ["| target | per function (ours / reference median regret) | met |", "|---|---|---|"]
    auto = {f: (median("auto", f, 100), median("optuna TPE", f, 100)) for f in FUNCTIONS}
    halved = sum(a <= 0.5 * t for a, t in auto.values())
    rows.append("| `auto` <= TPE everywhere, <= TPE/2 on half | "
                + ", ".join(f"{f}: {fmt(a)} / {fmt(t)}" for f, (a, t) in auto.items())
                + f" | {'yes' if all(a <= t for a, t in auto.values()) and 2 * halved >= len(auto) else 'no'}"
                f" ({halved}/{len(auto)} halved) |")
    glob = {f: (median("global", f, 100), median("optuna random", f, 100)) for f in FUNCTIONS}
    rows.append("| `global` <= random/3 everywhere | "
                + ", ".join(f"{f}: {fmt(g)} / {fmt(r)}" for f, (g, r) in glob.items())
                + f" | {'yes' if all(g <= r / 3 for g, r in glob.values()) else 'no'} |")
    last = max(b for (_, _, b) in regret)
    heur = {f: (median("annealing", f, last), median("optuna random", f, last)) for f in FUNCTIONS}
    rows.append(f"| `heuristic` (annealing) < random everywhere @ {last} | "
                + ", ".join(f"{f}: {fmt(h)} / {fmt(r)}" for f, (h, r) in heur.items())
                + f" | {'yes' if all(h < r for h, r in heur.values()) else 'no'} |")
    rows.append("")
    return rows


if __name__ == "__main__":
    main()
