"""Multi-objective benchmark: hypervolume at equal budget on standard test problems.

    nice -n 10 python -m benchmarks.mo [--trials 100] [--seeds 5] [--out benchmarks/results/mo.md]

ZDT1 and ZDT2 (two objectives, convex and concave fronts) and DTLZ2 (three objectives, a
sphere octant), 6 variables each, every objective minimised. Compared at the same number of
trials: finesweep's `global` (multi-objective TPE as finesweep configures it) and `heuristic`
(NSGA-II, NSGA-III for three objectives, population 8) against Optuna's NSGA-II and TPE with
their defaults. Each sampler is driven by Optuna's ask/tell with finesweep's own space
sampling, so the sweep machinery (Ray, training) is left out and only the search is compared.

MO-ASHA at equal simulated time: the objectives a trial observes at epoch e are its final ones
plus 0.5/e (every trial learns alike, so early epochs rank trials as the last would, and
rung order is informative but not exact in 3 objectives); a full trial takes 9 epochs. With a
budget of ``trials`` x 9 epochs, `global` without early stopping runs ``trials`` trials; with
MO-ASHA (grace 1, reduction factor 3) it runs trials until the same epochs are spent, and only
trials that ran all 9 epochs count for the front.

Hypervolume: of the front of the trials' final values, with the reference point at each
objective's worst value over the space plus 10% (ZDT: (1.1, 11), since g <= 10; DTLZ2: 2.2 in
each, since g <= 1 with 6 variables); the table gives the gap to the true front's hypervolume
(ZDT1 12.1 - 1/3, ZDT2 12.1 - 2/3, DTLZ2 2.2^3 - pi/6): lower is better, 0 is the true front.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from finesweep.search.objectives.pareto import front, hypervolume
from finesweep.search.schedulers.mo_asha import MultiObjectiveRungs
from finesweep.search.space import FloatParam, SearchSpace
from finesweep.search.strategies.multi_objective import make_multi_objective_sampler

DIM = 6
MAX_EPOCHS = 9


@dataclass(frozen=True)
class Problem:
    name: str
    objectives: int
    evaluate: Callable[[Sequence[float]], tuple[float, ...]]
    reference: tuple[float, ...]
    true_hypervolume: float


def zdt1(x: Sequence[float]) -> tuple[float, ...]:
    g = 1 + 9 * sum(x[1:]) / (len(x) - 1)
    return x[0], g * (1 - math.sqrt(x[0] / g))


def zdt2(x: Sequence[float]) -> tuple[float, ...]:
    g = 1 + 9 * sum(x[1:]) / (len(x) - 1)
    return x[0], g * (1 - (x[0] / g) ** 2)


def dtlz2(x: Sequence[float]) -> tuple[float, ...]:
    g = sum((v - 0.5) ** 2 for v in x[2:])
    a, b = x[0] * math.pi / 2, x[1] * math.pi / 2
    return ((1 + g) * math.cos(a) * math.cos(b), (1 + g) * math.cos(a) * math.sin(b), (1 + g) * math.sin(a))


PROBLEMS = [Problem("ZDT1", 2, zdt1, (1.1, 11.0), 12.1 - 1 / 3), Problem("ZDT2", 2, zdt2, (1.1, 11.0), 12.1 - 2 / 3),
            Problem("DTLZ2", 3, dtlz2, (2.2, 2.2, 2.2), 2.2**3 - math.pi / 6)]
SPACE = SearchSpace(params=tuple(FloatParam(f"x{i}", 0.0, 1.0) for i in range(DIM)))


def sampler(name: str, objectives: int, seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "finesweep global":
            return make_multi_objective_sampler("global", SPACE, {}, objectives=objectives, seed=seed)
        if name == "finesweep heuristic":
            return make_multi_objective_sampler("heuristic", SPACE, {}, objectives=objectives, seed=seed)
        if name == "Optuna NSGA-II":
            return optuna.samplers.NSGAIISampler(seed=seed)
        if name == "Optuna TPE":
            return optuna.samplers.TPESampler(seed=seed)
    raise KeyError(name)


SAMPLERS = ["finesweep global", "finesweep heuristic", "Optuna NSGA-II", "Optuna TPE"]


def gap(points: list[tuple[float, ...]], problem: Problem) -> float:
    """The true front's hypervolume minus that of ``points``' front."""
    return problem.true_hypervolume - hypervolume([points[i] for i in front(points)], problem.reference)


def plain_run(problem: Problem, name: str, seed: int, trials: int) -> float:
    study = optuna.create_study(directions=["minimize"] * problem.objectives,
                                sampler=sampler(name, problem.objectives, seed))
    points = []
    for _ in range(trials):
        trial = study.ask()
        params = SPACE.sample(trial)
        values = problem.evaluate([params[f"x{i}"] for i in range(DIM)])
        study.tell(trial, list(values))
        points.append(values)
    return gap(points, problem)


def asha_run(problem: Problem, seed: int, trials: int) -> tuple[float, int, int]:
    """`global` with MO-ASHA at ``trials`` x MAX_EPOCHS epochs; (hypervolume gap, trials
    run, trials completed)."""
    study = optuna.create_study(directions=["minimize"] * problem.objectives,
                                sampler=sampler("finesweep global", problem.objectives, seed))
    rungs = MultiObjectiveRungs(max_t=MAX_EPOCHS, grace_period=1, reduction_factor=3)
    budget, spent, finals, started = trials * MAX_EPOCHS, 0, [], 0
    while spent < budget:
        trial = study.ask()
        params = SPACE.sample(trial)
        started += 1
        final = problem.evaluate([params[f"x{i}"] for i in range(DIM)])
        epoch = 0
        while epoch < MAX_EPOCHS and spent < budget:
            epoch += 1
            spent += 1
            if not rungs.on_result(str(trial.number), epoch, [v + 0.5 / epoch for v in final]):
                break
        if epoch == MAX_EPOCHS:
            study.tell(trial, list(final))
            finals.append(final)
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return (gap(finals, problem) if finals else problem.true_hypervolume), started, len(finals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/mo.md")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.time()
    rows, asha_rows = [], []
    for problem in PROBLEMS:
        cells = []
        for name in SAMPLERS:
            gaps = [plain_run(problem, name, seed, args.trials) for seed in range(args.seeds)]
            cells.append(f"{statistics.mean(gaps):.3f} ± {statistics.stdev(gaps) if len(gaps) > 1 else 0:.3f}")
            print(problem.name, name, [round(g, 3) for g in gaps], flush=True)
        rows.append(f"| {problem.name} | " + " | ".join(cells) + " |")
        plain = [plain_run(problem, "finesweep global", seed, args.trials) for seed in range(args.seeds)]
        asha = [asha_run(problem, seed, args.trials) for seed in range(args.seeds)]
        asha_rows.append(f"| {problem.name} | {statistics.mean(plain):.3f} | {statistics.mean(a[0] for a in asha):.3f} "
                         f"| {statistics.mean(a[1] for a in asha):.0f} | {statistics.mean(a[2] for a in asha):.0f} |")
        print(problem.name, "MO-ASHA", [tuple(round(v, 3) for v in a) for a in asha], flush=True)
    wall = time.time() - started
    command = f"python -m benchmarks.mo --trials {args.trials} --seeds {args.seeds}"
    text = "\n".join([
        "# Multi-objective strategies: hypervolume at equal budget", "",
        f"`{command}` ({wall:.0f} s; Python {platform.python_version()}, Optuna {optuna.__version__}). "
        f"Hypervolume gap to the true front (lower is better) of the front of {args.trials} trials, mean ± "
        f"standard deviation over {args.seeds} seeds. Method: the module's docstring.", "",
        "| problem | " + " | ".join(SAMPLERS) + " |", "|---|" + "---|" * len(SAMPLERS), *rows, "",
        f"## MO-ASHA at equal simulated time ({args.trials} x {MAX_EPOCHS} epochs)", "",
        "| problem | global, no early stopping | global + MO-ASHA | trials started with MO-ASHA "
        "| trials completed with MO-ASHA |", "|---|---|---|---|---|", *asha_rows, ""])
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
