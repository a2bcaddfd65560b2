"""BBOB, COCO's noiseless suite: finesweep's strategies against stock and outside samplers.

The 24 functions of COCO's `bbob` suite (``cocoex``, package coco-experiment, in the `bench`
extra) in dimensions 2, 5 and 10 on [-5, 5]^d, at budgets of 20 x dim and 100 x dim
evaluations. Every arm runs the same protocol: in-process ask/tell, one run per (function,
dimension, instance, seed), regret = the best value found minus the instance's optimum f_opt
(noiseless). finesweep's strategies are built as benchmarks/strategies.py builds them (the
registry's factory, default options) and, like Optuna's samplers, never read the budget: each
runs once to 100 x dim and its 20 x dim result is read from the start of that run. NGOpt and
SMAC3 are told the budget and run once per budget. Optuna's GP and SMAC3 (a random forest
refitted every trial) run at 20 x dim only, or the suite would not fit the time.

The default run is the check, instances 4 and 5; instances 1-3 are the development instances
(``--instances 1,2,3``). Writes a Markdown report with a table per function group and an ECDF
plot as COCO draws them (the fraction of (function, target) pairs reached against
evaluations / dim, targets 10^2 .. 10^-8), and the runs as .json.gz beside it.

    python -m benchmarks.bbob                 # check instances 4,5, 3 runs (seeds) each
    python -m benchmarks.bbob --quick         # dimensions 2 and 5 only
    python -m benchmarks.bbob --quick --instances 1,2,3 --out benchmarks/results/bbob_dev.md

NGOpt, the independent TPE, `global`, GP and SMAC3 run only when named with --arms.

Cost measured (2026-12-06, 2 worker processes on 2 shared cores): ``--quick`` with the default
arms and 3 runs per instance took 731 s on the wall for instances 4-5 (602 CPU seconds in the
runs, load average 5.5) and 847 s for instances 1-3 (884 CPU seconds, load 4.2); ``--dimensions
10`` (TPE to 20 x dim only) 882 s for instances 4-5 (1,360 CPU seconds, load 3.1). The default run
is the sum of the first and the last.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import gzip
import importlib.metadata
import json
import multiprocessing
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from finesweep.search.space import FloatParam, SearchSpace

from benchmarks.bbob_report import BUDGET_AWARE, MULTIPLIERS, report
from benchmarks.strategies import machine, make, quiet, versions

RESULTS = Path(__file__).resolve().parent / "results" / "bbob.md"
OURS = ("auto", "global", "local", "heuristic")
STOCK = ("optuna TPE", "optuna TPE (indep.)", "optuna CMA-ES", "optuna GP", "optuna random")
OUTSIDE = ("NGOpt", "SMAC3")
# The default arms: the strategies the acceptance rules name and their references. The
# others run only when named with --arms: `global` (on cheap trials it is Optuna's multivariate
# TPE, which Optuna 5's default TPESampler() already is), the independent TPE, Optuna's GP,
# SMAC3 and NGOpt, whose suggestions cost far more per run.
DEFAULT_ARMS = ("auto", "local", "heuristic", "optuna TPE", "optuna CMA-ES", "optuna random")
# Run to the smallest budget only: their suggestion cost grows with the trials.
SHORT_ONLY = ("optuna GP", "SMAC3")
# Run to the smallest budget only in these dimensions unless --full: TPE's 1,000-trial runs in
# 10-d cost more than the rest of a 10-d run together.
SHORT_UNLESS_FULL = {"optuna TPE": (10,), "optuna TPE (indep.)": (10,)}
DIMENSIONS = (2, 5, 10)
FUNCTIONS = tuple(range(1, 25))

Job = tuple[str, int, int, int, int, int]  # arm, function, dimension, instance, seed, trials


# --------------------------------------------------------------------------- problems

_SUITES: dict[int, Any] = {}
_OPTIMA: dict[tuple[int, int, int], float] = {}


def problem(function: int, dim: int, instance: int) -> Any:
    import cocoex  # The bench extra: the module imports without it (tests read its report code).

    if dim not in _SUITES:
        _SUITES[dim] = cocoex.Suite("bbob", "", f"dimensions:{dim}")
    return _SUITES[dim].get_problem_by_function_dimension_instance(function, dim, instance)


def optimum(function: int, dim: int, instance: int) -> float:
    """f_opt of an instance: the value at its optimum x_opt, which cocoex only writes to a file
    (``_best_parameter('print')`` in the current directory)."""
    key = (function, dim, instance)
    if key not in _OPTIMA:
        p = problem(function, dim, instance)
        here = os.getcwd()
        with tempfile.TemporaryDirectory() as folder:
            os.chdir(folder)
            try:
                p._best_parameter("print")
                x_opt = np.loadtxt("._bbob_problem_best_parameter.txt", ndmin=1)
            finally:
                os.chdir(here)
        _OPTIMA[key] = float(p(x_opt))
    return _OPTIMA[key]


def space(dim: int) -> SearchSpace:
    return SearchSpace(params=tuple(FloatParam(f"x{i}", -5.0, 5.0) for i in range(dim)))


# --------------------------------------------------------------------------- arms


def run_optuna(arm: str, fn: Any, dim: int, trials: int, seed: int) -> list[float]:
    name = {"heuristic": "heuristic", "optuna TPE (indep.)": "optuna TPE"}.get(arm, arm)
    if arm == "optuna TPE (indep.)":
        # Optuna 5's TPESampler() is multivariate on single-objective studies (its
        # `_is_multivariate`): the "optuna TPE" arm is the multivariate one, this the independent.
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=False)
    else:
        # As benchmarks/strategies.py builds them: ours from the registry with default options.
        sampler = make(name, space(dim), seed)
    study = optuna.create_study(sampler=sampler)
    values = []
    for _ in range(trials):
        trial = study.ask()
        x = np.array([trial.suggest_float(f"x{i}", -5.0, 5.0) for i in range(dim)])
        value = float(fn(x))
        study.tell(trial, value)
        values.append(value)
    return values


def run_ngopt(fn: Any, dim: int, trials: int, seed: int) -> list[float]:
    import nevergrad as ng  # The bench extra: only this arm needs it.

    parametrization = ng.p.Array(shape=(dim,), lower=-5.0, upper=5.0)
    parametrization.random_state = np.random.RandomState(seed)
    optimizer = ng.optimizers.NGOpt(parametrization=parametrization, budget=trials, num_workers=1)
    values = []
    with _scalar_predictions():
        for _ in range(trials):
            candidate = optimizer.ask()
            value = float(fn(np.asarray(candidate.value, dtype=float)))
            optimizer.tell(candidate, value)
            values.append(value)
    # Some of NGOpt's choices run scipy or cma in a thread that waits for the next point;
    # dropping the optimizer stops them (nevergrad's recaster stops its thread on deletion).
    del optimizer
    gc.collect()
    return values


@contextlib.contextmanager
def _scalar_predictions() -> Iterator[None]:
    """nevergrad 1.0.12's metamodel takes ``float()`` of a one-row prediction, which numpy 2.4
    refuses (a 1-element array is not a scalar): the thread dies and NGOpt waits forever. The
    linear model it fits gives a scalar for one row here; nothing else changes."""
    import sklearn.linear_model  # nevergrad's dependency: only the NGOpt arm needs it.

    original = sklearn.linear_model.LinearRegression

    class ScalarLinearRegression(original):  # type: ignore[misc, valid-type]
        def predict(self, X: Any) -> Any:
            out = super().predict(X)
            return out[0] if len(out) == 1 else out

    sklearn.linear_model.LinearRegression = ScalarLinearRegression
    try:
        yield
    finally:
        sklearn.linear_model.LinearRegression = original


def run_smac(fn: Any, dim: int, trials: int, seed: int) -> list[float]:
    # The bench extra (smac and its ConfigSpace): only this arm needs them.
    from ConfigSpace import ConfigurationSpace, Float
    from smac import HyperparameterOptimizationFacade, Scenario
    from smac.runhistory.dataclasses import TrialValue

    config_space = ConfigurationSpace(seed=seed)
    config_space.add([Float(f"x{i}", (-5.0, 5.0)) for i in range(dim)])
    with tempfile.TemporaryDirectory() as folder:
        scenario = Scenario(config_space, deterministic=True, n_trials=trials, seed=seed,
                            output_directory=Path(folder) / "smac")
        smac = HyperparameterOptimizationFacade(scenario, lambda config, seed=0: 0.0, overwrite=True,
                                                logging_level=40)
        values = []
        for _ in range(trials):
            info = smac.ask()
            value = float(fn(np.array([info.config[f"x{i}"] for i in range(dim)])))
            smac.tell(info, TrialValue(cost=value))
            values.append(value)
    return values


def one_run(job: Job) -> tuple[Job, list[list[float]], float]:
    """The regret (best so far - f_opt) where it improved, and the CPU seconds the run took."""
    arm, function, dim, instance, seed, trials = job
    quiet()
    warnings.simplefilter("ignore")
    import torch  # Heavy, and only the worker processes need it.

    torch.set_num_threads(1)  # The pool already uses every core.
    fn = problem(function, dim, instance)
    f_opt = optimum(function, dim, instance)
    started = time.process_time()  # CPU seconds: wall-clock time measures the machine's load.
    if arm == "NGOpt":
        values = run_ngopt(fn, dim, trials, seed)
    elif arm == "SMAC3":
        values = run_smac(fn, dim, trials, seed)
    else:
        values = run_optuna(arm, fn, dim, trials, seed)
    regrets = np.maximum(np.minimum.accumulate(np.array(values)) - f_opt, 0.0)
    # Only where the best improved, as [evaluation index, regret]: a tenth of the whole curve.
    improved = [0] + [i for i in range(1, len(regrets)) if regrets[i] < regrets[i - 1]]
    return job, [[i, float(regrets[i])] for i in improved], time.process_time() - started


def jobs_for(arms: tuple[str, ...], functions: tuple[int, ...], dims: tuple[int, ...],
             instances: tuple[int, ...], seeds: int, full: bool = False,
             multipliers: tuple[int, ...] = MULTIPLIERS) -> list[Job]:
    jobs = []
    for arm in arms:
        for dim in dims:
            budgets = [m * dim for m in multipliers]
            if arm in SHORT_ONLY or (not full and dim in SHORT_UNLESS_FULL.get(arm, ())):
                budgets = budgets[:1]
            elif arm not in BUDGET_AWARE:
                budgets = budgets[-1:]
            for function in functions:
                for instance in instances:
                    for seed in range(seeds):
                        jobs += [(arm, function, dim, instance, 1000 * instance + seed, b) for b in budgets]
    # The slowest first (many trials on a model), so the pool ends evenly.
    model_based = ("optuna TPE", "optuna TPE (indep.)", "global", "optuna GP", "SMAC3")
    return sorted(jobs, key=lambda j: -j[5] * (20 if j[0] in model_based else 1))


def bench_versions() -> str:
    """benchmarks/strategies.py's list plus the bench extra's packages."""
    parts = [versions()]
    for package in ("coco-experiment", "nevergrad", "smac"):
        try:
            parts.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{package} not installed")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="dimensions 2 and 5 only")
    parser.add_argument("--instances", default="4,5", help="comma-separated; 1-3 were for development")
    parser.add_argument("--seeds", type=int, default=3, help="runs per instance (default 3)")
    parser.add_argument("--full", action="store_true",
                        help="also Optuna's TPE to 100 x dim in dimension 10 (about 18 more minutes on 2 cores)")
    parser.add_argument("--dimensions", help="comma-separated (default 2,5,10; 2,5 with --quick)")
    parser.add_argument("--functions", help="comma-separated BBOB function numbers (default 1-24)")
    parser.add_argument("--arms", help=f"comma-separated arms (default {','.join(DEFAULT_ARMS)})")
    parser.add_argument("--multipliers", default=",".join(map(str, MULTIPLIERS)),
                        help="budgets as multiples of the dimension, comma-separated (default 20,100)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--reuse", type=Path, action="append", default=[],
                        help="an earlier run's .json.gz: its runs of the same jobs are taken, not rerun "
                             "(for arms that did not change)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    instances = tuple(int(i) for i in args.instances.split(","))
    seeds = args.seeds
    dims = tuple(int(d) for d in args.dimensions.split(",")) if args.dimensions else (
        (2, 5) if args.quick else DIMENSIONS)
    functions = tuple(int(f) for f in args.functions.split(",")) if args.functions else FUNCTIONS
    arms = tuple(args.arms.split(",")) if args.arms else DEFAULT_ARMS
    multipliers = tuple(sorted(int(m) for m in args.multipliers.split(",")))
    unknown = set(arms) - set(OURS + STOCK + OUTSIDE)
    if unknown:
        raise SystemExit(f"unknown arms {sorted(unknown)}; known: {', '.join(OURS + STOCK + OUTSIDE)}")
    # One thread per worker: the pool already uses the cores, and BLAS threads competing with it
    # made Optuna's TPE several times slower in CPU seconds (the spawned workers read this).
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    started = time.perf_counter()
    load_before = os.getloadavg()
    jobs = jobs_for(arms, functions, dims, instances, seeds, args.full, multipliers)
    earlier = {}
    for path in args.reuse:
        with gzip.open(path, "rt") as handle:
            for job, curve, seconds in json.load(handle)["runs"]:
                earlier[tuple(job)] = (tuple(job), curve, seconds)
    runs = [earlier[job] for job in jobs if job in earlier]
    todo = [job for job in jobs if job not in earlier]
    # The 1-minute load average about every 30 s: the machine may be shared, and wall time
    # says little without it. Progress goes to stderr at the same moments.
    loads, sampled = [], time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for done, result in enumerate(pool.imap_unordered(one_run, todo, chunksize=1), start=1):
            runs.append(result)
            if time.perf_counter() - sampled >= 30:
                sampled = time.perf_counter()
                loads.append(os.getloadavg()[0])
                print(f"{done}/{len(todo)} runs in {sampled - started:.0f} s, load {loads[-1]:.1f}",
                      file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    given = sys.argv[1:] if argv is None else argv
    meta = {
        "command": "python -m benchmarks.bbob" + (" " + " ".join(given) if given else ""),
        "date": datetime.date.today().isoformat(), "seconds": elapsed, "versions": bench_versions(),
        "machine": f"{machine()}; {args.workers} worker processes",
        "load": f"load average {load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
                f"{np.mean(loads or [0.0]):.1f} on average ({min(loads or [0.0]):.1f}-{max(loads or [0.0]):.1f}) "
                f"over {len(loads)} samples about 30 s apart",
        "instances": instances, "seeds": seeds, "full": args.full, "dimensions": dims, "functions": functions,
        "arms": arms, "multipliers": multipliers, "budget_aware": BUDGET_AWARE,
        "cpu_seconds": sum(seconds for _, _, seconds in runs),
        "reused": [str(path) for path in args.reuse],
    }
    raw = args.out.with_suffix(".json.gz")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(raw, "wt") as handle:
        json.dump({"meta": meta, "runs": [[list(job), regrets, seconds] for job, regrets, seconds in runs]}, handle)
    text = report(meta, runs, args.out.with_suffix(".png"))
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
