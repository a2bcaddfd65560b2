"""Benchmark finesweep's strategies against Optuna's stock samplers on a wide suite of functions.

In-process Optuna ask/tell (no Ray, no training): every sampler runs on every function of
benchmarks/functions.py (standard test functions across the usual families, mixed and
conditional spaces, noisy variants) for every seed, and the simple regret is read at each
budget: the noise-free value of the best observed trial minus the known optimum. Also measured:
seconds per suggestion with 500 finished trials in a 10-parameter space. Writes
benchmarks/results/strategies.md.

    python -m benchmarks.strategies                    # budgets 100/200, 10 seeds (< 15 min, 2 cores)
    python -m benchmarks.strategies --quick            # budgets 100/200, 3 seeds
    python -m benchmarks.strategies --functions dev    # the functions the strategies were developed on
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import math
import multiprocessing
import os
import platform
import sys
import time
import warnings
import zlib
from pathlib import Path

import finesweep.search.strategies as strategies_module
import numpy as np
import optuna
from finesweep.search.space import CategoricalParam, FloatParam, IntParam, SearchSpace
from finesweep.search.strategies import STRATEGIES

from benchmarks.functions import FUNCTIONS, Function

RESULTS = Path(__file__).resolve().parent / "results" / "strategies.md"
ROOT = RESULTS.parents[2]


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is in it (the results file is committed)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
# `heuristic` is an alias (of `genetic` or `annealing`, as the registry says) and `grid` needs a
# finite space: neither gets its own row; `random` is Optuna's RandomSampler (the stock row).
OURS = ("auto", "global", "local", "annealing", "genetic")
HEURISTIC = next(name for name in OURS if strategies_module.STRATEGIES[name].factory
                 is strategies_module.STRATEGIES["heuristic"].factory)
STOCK = ("optuna TPE", "optuna CMA-ES", "optuna random")
BUDGETS = (100, 200)
# Regrets below this count as solved: ratios of two solved runs are 1, not 1e-20 / 1e-30.
REGRET_FLOOR = 1e-12


# --------------------------------------------------------------------------- running


def make(name: str, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    if name == "optuna TPE":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "optuna CMA-ES":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "optuna random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "optuna GP":
        return optuna.samplers.GPSampler(seed=seed)
    return STRATEGIES[name].factory(space, seed=seed)


def run(study: optuna.Study, function: Function, trials: int, seed: int = 0,
        trial_seconds: float | None = None) -> tuple[list[float], float, float]:
    """Ask/tell ``trials`` trials: the regret after each (noise-free value of the best observed
    trial minus the optimum), the mean and the largest seconds per suggestion. With
    ``trial_seconds`` every trial is recorded as having run that long (nothing sleeps), as
    samplers that read trial durations see a sweep of slow trials."""
    # The same noise for every sampler at the same seed and trial: differences are the samplers'.
    noise = np.random.default_rng([seed, zlib.crc32(function.name.encode())])
    regrets, best_observed, best_true, spent, slowest = [], math.inf, math.inf, 0.0, 0.0
    for _ in range(trials):
        start = time.perf_counter()
        trial = study.ask()
        params = function.space.sample(trial)
        elapsed = time.perf_counter() - start
        spent, slowest = spent + elapsed, max(slowest, elapsed)
        true = function.evaluate(params)
        observed = true + function.noise * noise.standard_normal() if function.noise else true
        study.tell(trial, observed)
        if trial_seconds is not None:
            stored = study._storage._get_trial(trial._trial_id)  # In-memory storage: the stored object.
            stored.datetime_start = stored.datetime_complete - datetime.timedelta(seconds=trial_seconds)
        if observed < best_observed:
            best_observed, best_true = observed, true
        regrets.append(max(0.0, best_true - function.optimum))
    return regrets, spent / trials, slowest


def one_run(job: tuple[str, str, int, int]) -> tuple[str, str, int, list[float], float]:
    sampler_name, function_name, seed, trials = job
    quiet()
    function = FUNCTIONS[function_name]
    study = optuna.create_study(sampler=make(sampler_name, function.space, seed))
    regrets, per_suggestion, _ = run(study, function, trials, seed)
    return sampler_name, function_name, seed, regrets, per_suggestion


def suggestion_seconds(name: str, finished: int = 500, timed: int = 5) -> float:
    """Seconds per suggestion once ``finished`` trials are in a 10-parameter study."""
    quiet()
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


def quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")


def select(functions: str | None) -> list[str]:
    """Function names from a comma-separated list of names, splits ("dev", "check") or "all"."""
    if not functions or functions == "all":
        return list(FUNCTIONS)
    chosen: list[str] = []
    for item in (part.strip() for part in functions.split(",")):
        matches = [n for n, f in FUNCTIONS.items() if item in (n, f.split)]
        if not matches:
            raise SystemExit(f"unknown function or split {item!r}; known: dev, check, {', '.join(FUNCTIONS)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


# --------------------------------------------------------------------------- report


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(median), float(q3)


def fmt(value: float) -> str:
    return f"{value:.2e}" if value and (abs(value) < 1e-2 or abs(value) >= 1e3) else f"{value:.3g}"


def compare(ours: list[float], reference: list[float]) -> str:
    """"better" (lower median), "tie" (higher median but the interquartile ranges overlap, so
    within the seeds' spread) or "worse"."""
    q1, median, _ = quartiles(ours)
    _, ref_median, ref_q3 = quartiles(reference)
    if median <= ref_median:
        return "better" if median < ref_median else "tie"
    return "tie" if q1 <= ref_q3 else "worse"


def ratio(ours: list[float], reference: list[float]) -> float:
    return max(quartiles(ours)[1], REGRET_FLOOR) / max(quartiles(reference)[1], REGRET_FLOOR)


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
    for package in ("optuna", "numpy", "cmaes", "scipy", "torch"):
        try:
            parts.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{package} not installed")
    return ", ".join(parts)


Regrets = dict[tuple[str, str, int], list[float]]


def summary(regret: Regrets, functions: list[str], samplers: tuple[str, ...],
            budgets: tuple[int, ...]) -> list[str]:
    """Each of ours against the best stock sampler (lowest median) per function and budget."""
    lines = ["## Summary: each strategy against the best stock sampler per function", "",
             "Best stock = the lowest median regret of " + ", ".join(STOCK) + " on that function. "
             "better = lower median; tie = higher median within the seeds' interquartile overlap; "
             "worse = higher median outside it. Geometric-mean ratio = geometric mean over functions "
             "of (median regret / best stock median regret); < 1 is better.", "",
             "| strategy | budget | better | tie | worse | geo-mean ratio | worse on |",
             "|---|---|---|---|---|---|---|"]
    for name in samplers:
        for budget in budgets:
            outcomes, ratios, worse = {"better": 0, "tie": 0, "worse": 0}, [], []
            for function in functions:
                stock = min(STOCK, key=lambda s, f=function: quartiles(regret[(s, f, budget)])[1])
                if name == stock:
                    continue
                outcome = compare(regret[(name, function, budget)], regret[(stock, function, budget)])
                outcomes[outcome] += 1
                ratios.append(ratio(regret[(name, function, budget)], regret[(stock, function, budget)]))
                if outcome == "worse":
                    worse.append(function)
            geo = math.exp(float(np.mean(np.log(ratios)))) if ratios else float("nan")
            label = f"`{name}`" if name in OURS else name
            lines.append(f"| {label} | {budget} | {outcomes['better']} | {outcomes['tie']} | {outcomes['worse']} "
                         f"| {geo:.3g} | {', '.join(worse) or '-'} |")
    return [*lines, ""]


def targets(regret: Regrets, functions: list[str], budgets: tuple[int, ...]) -> list[str]:
    """The issue's targets, each checked per function and budget."""
    lines = ["## Targets", "",
             "| target | budget | better / tie / worse | met | worse on (ours / reference median) |",
             "|---|---|---|---|---|"]
    for ours, reference, rule in (("auto", "optuna TPE", "no worse anywhere, better on most"),
                                  ("local", "optuna random", "better everywhere"),
                                  (HEURISTIC, "optuna random", "better everywhere")):
        for budget in budgets:
            outcomes = {f: compare(regret[(ours, f, budget)], regret[(reference, f, budget)]) for f in functions}
            counts = [sum(o == k for o in outcomes.values()) for k in ("better", "tie", "worse")]
            if rule.startswith("no worse"):
                met = counts[2] == 0 and 2 * counts[0] > len(functions)
            else:
                met = counts[0] == len(functions)
            label = f"heuristic ({HEURISTIC})" if ours == HEURISTIC else ours
            missed = [f"{f}: {fmt(quartiles(regret[(ours, f, budget)])[1])} / "
                      f"{fmt(quartiles(regret[(reference, f, budget)])[1])}"
                      for f, o in outcomes.items() if o != "better" and (o == "worse" or not rule.startswith("no"))]
            lines.append(f"| `{label}` vs {reference}: {rule} | {budget} | {' / '.join(map(str, counts))} | "
                         f"{'yes' if met else 'no'} | {'; '.join(missed) or '-'} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds")
    parser.add_argument("--seeds", type=int, help="number of seeds (default 10, 3 with --quick)")
    parser.add_argument("--functions", help="comma-separated names or splits (dev, check); default all")
    parser.add_argument("--samplers", help="comma-separated samplers; default every one of ours and stock")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 10)
    functions = select(args.functions)
    samplers = tuple(args.samplers.split(",")) if args.samplers else OURS + STOCK
    started = time.perf_counter()

    jobs = [(s, f, seed, BUDGETS[-1]) for f in functions for seed in range(seeds) for s in samplers]
    timed = list(samplers) if not args.samplers else []
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        runs = pool.map(one_run, jobs, chunksize=1)
        speed = dict(zip(timed, pool.map(suggestion_seconds, timed), strict=True))

    regret: Regrets = {}
    per_suggestion: dict[tuple[str, str], list[float]] = {}
    for sampler_name, function_name, _seed, regrets, seconds in runs:
        for budget in BUDGETS:
            regret.setdefault((sampler_name, function_name, budget), []).append(regrets[budget - 1])
        per_suggestion.setdefault((sampler_name, function_name), []).append(seconds)

    given = sys.argv[1:] if argv is None else argv
    command = "python -m benchmarks.strategies" + (" " + " ".join(given) if given else "")
    lines = [
        "# Strategy benchmark",
        "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()} in "
        f"{time.perf_counter() - started:.0f} s.",
        "",
        f"- Versions: {versions()}",
        f"- Machine: {machine()}; {args.workers} worker processes",
        f"- Strategies imported from {_shown(Path(strategies_module.__file__).resolve().parent)}",
        f"- {len(functions)} functions (benchmarks/functions.py), {seeds} seeds per cell; simple regret = "
        "noise-free value of the best observed trial - known optimum, shown as median "
        "[25th - 75th percentile]; lower is better.",
        "- Ours: " + ", ".join(f"`{s}`" for s in OURS) + f" (`heuristic` = `{HEURISTIC}`, `random` = Optuna's "
        "RandomSampler); stock Optuna with default settings: TPESampler(), CmaEsSampler(), RandomSampler(), "
        "each built as `make_sampler(name, space, {}, seed)` would.",
        "- Functions marked (dev) are those the strategies were developed on; the rest were only checked.",
        "",
    ]
    present = [s for s in samplers if all((s, f, BUDGETS[0]) in regret for f in functions)]
    if all(s in present for s in STOCK):
        lines += summary(regret, functions, tuple(s for s in present if s not in STOCK), BUDGETS)
        if {"auto", "local", HEURISTIC} <= set(present):
            lines += targets(regret, functions, BUDGETS)
    for function_name in functions:
        function = FUNCTIONS[function_name]
        dim = len(function.space.params)
        lines += [f"## {function_name}{' (dev)' if function.split == 'dev' else ''}", "",
                  f"{function.family}, {dim} parameters" + (f", noise sd {function.noise:g}" if function.noise else "")
                  + f", optimum {function.optimum:.6g}.", "",
                  "| sampler | " + " | ".join(f"regret @ {b}" for b in BUDGETS) + " | ms / suggestion |",
                  "|---" * (len(BUDGETS) + 2) + "|"]
        for sampler_name in present:
            cells = []
            for budget in BUDGETS:
                q1, median, q3 = quartiles(regret[(sampler_name, function_name, budget)])
                cells.append(f"{fmt(median)} [{fmt(q1)} - {fmt(q3)}]")
            label = f"`{sampler_name}`" if sampler_name in OURS else sampler_name
            ms = 1000 * float(np.median(per_suggestion[(sampler_name, function_name)]))
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {ms:.1f} |")
        lines.append("")

    if speed:
        lines += ["## Seconds per suggestion with 500 finished trials, 10 parameters", "",
                  "| sampler | ms / suggestion |", "|---|---|"]
        lines += [f"| {name} | {1000 * seconds:.1f} |" for name, seconds in speed.items()]
        lines.append("")
    lines += [f"Total run time: {time.perf_counter() - started:.0f} s.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
