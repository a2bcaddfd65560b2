"""Multi-objective benchmark on a real model: the digits CNN's accuracy against its size.

    nice -n 10 python -m benchmarks.mo_digits [--trials 40] [--seeds 5] [--out benchmarks/results/mo_digits.md]

The recorded digits-CNN curves (benchmarks/data/digits_curves.jsonl.gz: 1,134 configurations,
20 epochs, 2 seeds, recorded by ``benchmarks.record_curves``) stand in for training, over the
space of ``benchmarks/replay.yaml``. Objectives: ``val_acc`` (max) and ``n_params`` (min; the
parameters of the built-in ImageClassifier the curves were recorded with, counted by building
it). A point between grid values is the nearest recorded configuration, for both objectives.

A trial's value for the front is its configuration's true value (the best-epoch ``val_acc``
averaged over both recorded seeds, as ``benchmarks.replay`` scores); hypervolume over
(-val_acc, n_params / the largest count), reference (-0.9, 1.1) (only configurations above 90%
val_acc count), as the gap to the hypervolume of the
whole table's front (lower is better). At equal trials: finesweep's `global` and `heuristic`
against Optuna's NSGA-II and TPE at their defaults. At equal simulated time: `global` without
early stopping for ``trials`` trials of 20 epochs, one at a time, each epoch taking its
configuration's recorded time, against `global` with MO-ASHA (grace 1, reduction factor 3) on
the observed epochs (the replayed seed's val_acc at that epoch) until the same seconds are spent.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from pathlib import Path

import optuna
from finesweep.search.objectives.pareto import front, hypervolume
from finesweep.search.schedulers.mo_asha import MultiObjectiveRungs
from finesweep.search.space import CategoricalParam, FloatParam, IntParam, SearchSpace

from benchmarks.curves import Config, CurveTable
from benchmarks.mo import SAMPLERS, sampler

ROOT = Path(__file__).resolve().parent
TABLE = ROOT / "data" / "digits_curves.jsonl.gz"
EPOCHS = 20
SPACE = SearchSpace(params=(
    FloatParam("learning_rate", 1e-4, 1e-1, log=True), CategoricalParam("optimizer", ("adam", "sgd")),
    FloatParam("weight_decay", 1e-5, 1e-2, log=True), IntParam("conv_layers", 1, 3),
    IntParam("channels", 8, 32, log=True), FloatParam("dropout", 0.0, 0.5, step=0.25)))
REFERENCE = (-0.9, 1.1)


@functools.cache
def table() -> CurveTable:
    return CurveTable.read(TABLE)


@functools.cache
def n_params(conv_layers: int, channels: int) -> int:
    from finesweep.models.image_classification import ImageClassifier

    fixed = dict(table().header["model"]["init_args"])
    model = ImageClassifier(conv_layers=conv_layers, channels=channels, **fixed)
    # Built as DigitsData builds it: 8x8 grey images, the 10 digits.
    model.build({"in_channels": 1, "image_size": 8, "labels": tuple(range(10))})
    return sum(p.numel() for p in model.parameters())


@functools.cache
def largest() -> int:
    return max(n_params(c, w) for c in (1, 2, 3) for w in (8, 16, 32))


def point(config: Config, accuracy: float) -> tuple[float, float]:
    return -accuracy, n_params(config.params["conv_layers"], config.params["channels"]) / largest()


def true_point(config: Config) -> tuple[float, float]:
    return point(config, config.best_value("val_acc", "max"))


@functools.cache
def table_hypervolume() -> float:
    points = [true_point(c) for c in table().configs.values()]
    return hypervolume([points[i] for i in front(points)], REFERENCE)


def gap(points: list[tuple[float, float]]) -> float:
    return table_hypervolume() - hypervolume([points[i] for i in front(points)], REFERENCE)


def plain_run(name: str, seed: int, trials: int) -> tuple[float, float]:
    """(hypervolume gap, simulated seconds) of ``trials`` full trials."""
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler(name, 2, seed))
    points, seconds = [], 0.0
    for _ in range(trials):
        trial = study.ask()
        config = table().lookup(SPACE.sample(trial))
        run = config.run_for(trial.number)
        seconds += config.epoch_seconds * run.epochs
        study.tell(trial, list(point(config, max(run.metrics["val_acc"]))))
        points.append(true_point(config))
    return gap(points), seconds


def asha_run(seed: int, seconds: float) -> tuple[float, int, int]:
    """`global` with MO-ASHA for ``seconds`` of simulated time; (gap, trials run, completed)."""
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler("finesweep global", 2, seed))
    rungs = MultiObjectiveRungs(max_t=EPOCHS, grace_period=1, reduction_factor=3)
    spent, points, started = 0.0, [], 0
    while spent < seconds:
        trial = study.ask()
        config = table().lookup(SPACE.sample(trial))
        run = config.run_for(trial.number)
        started += 1
        epoch = 0
        while epoch < run.epochs and spent < seconds:
            epoch += 1
            spent += config.epoch_seconds
            if not rungs.on_result(str(trial.number), epoch, point(config, run.metrics["val_acc"][epoch - 1])):
                break
        if epoch == EPOCHS:
            study.tell(trial, list(point(config, max(run.metrics["val_acc"]))))
            points.append(true_point(config))
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return (gap(points) if points else table_hypervolume()), started, len(points)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/mo_digits.md")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.time()
    cells, budgets = [], []
    for name in SAMPLERS:
        runs = [plain_run(name, seed, args.trials) for seed in range(args.seeds)]
        gaps = [g for g, _ in runs]
        cells.append(f"{statistics.mean(gaps):.4f} ± {statistics.stdev(gaps):.4f}")
        if name == "finesweep global":
            budgets = runs
        print(name, [round(g, 4) for g in gaps], flush=True)
    asha = [asha_run(seed, seconds) for seed, (_, seconds) in enumerate(budgets)]
    print("MO-ASHA", asha, flush=True)
    command = f"python -m benchmarks.mo_digits --trials {args.trials} --seeds {args.seeds}"
    text = "\n".join([
        "# Several objectives on the digits CNN: accuracy against parameter count", "",
        f"`{command}` ({time.time() - started:.0f} s). Hypervolume gap to the front of all {len(table().configs)} "
        f"recorded configurations (whose hypervolume is {table_hypervolume():.4f}), mean ± standard deviation "
        f"over {args.seeds} seeds, lower is better. Method: the module's docstring.", "",
        f"## At {args.trials} trials", "", "| " + " | ".join(SAMPLERS) + " |", "|" + "---|" * len(SAMPLERS),
        "| " + " | ".join(cells) + " |", "",
        f"## At equal simulated time (`global`'s {args.trials} full trials, one at a time)", "",
        "| no early stopping | MO-ASHA | trials started with MO-ASHA | completed with MO-ASHA |", "|---|---|---|---|",
        f"| {statistics.mean(g for g, _ in budgets):.4f} | {statistics.mean(a[0] for a in asha):.4f} "
        f"| {statistics.mean(a[1] for a in asha):.0f} | {statistics.mean(a[2] for a in asha):.0f} |", ""])
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
