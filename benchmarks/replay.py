"""Whole sweeps over recorded learning curves: strategy x scheduler, regret vs simulated time.

    python -m benchmarks.replay                  # 5 strategies x 4 schedulers x 2 seeds, 40 trials, 4 at a time
    python -m benchmarks.replay --quick          # 2 x 2 x 1, 20 trials: a smoke test
    python -m benchmarks.replay --strategies global,auto --schedulers asha --seeds 5 --concurrency 8

Every sweep is a real ``launch.py sweep`` (the same function, in this process, with one local
Ray for all of them) of benchmarks/replay.yaml: the replay task (benchmarks/replay_model.py)
reports the digits CNN's recorded curves (benchmarks/data/digits_curves.jsonl.gz, recorded by
``python -m benchmarks.record_curves``) epoch by epoch, so strategies and schedulers act on real
curves with real seed noise, and a sweep takes seconds.

Simulated time is the wall time the sweep would have taken training for real, without
finesweep's own overhead: the trials start in the order the sweep handed them out (trial
number), each on the first of ``concurrency`` slots to come free, and each takes the recorded
time of the epochs it ran (a pruned trial only its first ones; the configuration's median
recorded epoch, as the replay sleeps it). At each moment, the sweep's
answer is what it would return if stopped then: its best COMPLETE trial so far (ties: the
lower number, as ``best.yaml``). Regret is the table's best configuration's true value minus the
answer's true value, a configuration's true value being its best-epoch val_acc averaged over the
recorded seeds (so a lucky seed does not count as a good configuration). Writes
benchmarks/results/replay.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import heapq
import importlib.metadata
import math
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.curves import CurveTable

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "benchmarks" / "replay.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "replay.md"
STRATEGIES = ("random", "global", "local", "heuristic", "auto")
SCHEDULERS = ("none", "asha", "hyperband", "median")
# Simulated times at which regret is read, as fractions of the horizon: the simulated time a
# sweep without early stopping takes for the same number of trials.
FRACTIONS = (0.125, 0.25, 0.5, 1.0)


@dataclass
class Outcome:
    strategy: str
    scheduler: str
    seed: int
    # (simulated time, regret of the answer from then on), in time order.
    curve: list[tuple[float, float]]
    simulated_end: float
    real_seconds: float
    trials: int
    pruned: int


def load_spec() -> dict[str, Any]:
    spec = yaml.safe_load(SPEC.read_text())
    data = spec["data"]["init_args"]
    data["path"] = str((SPEC.parent / data["path"]).resolve())
    return spec


def simulated_ends(trials: Sequence[Any], table: CurveTable, concurrency: int) -> list[tuple[float, Any]]:
    """Each trial's simulated end time (see the module docstring), in trial-number order."""
    slots = [0.0] * concurrency
    ends = []
    for trial in sorted(trials, key=lambda t: t.number):
        epochs = len(trial.intermediate_values)
        start = heapq.heappop(slots)
        end = start + epochs * table.lookup(trial.params).epoch_seconds
        heapq.heappush(slots, end)
        ends.append((end, trial))
    return ends


def regret_curve(ends: list[tuple[float, Any]], table: CurveTable, metric: str, mode: str) -> list[tuple[float, float]]:
    """The regret of the sweep's answer after each trial that changed it, in time order."""
    from finesweep.search.study import ranked_trials_of

    _, best_value = table.best(metric, mode)
    sign = 1.0 if mode == "max" else -1.0
    curve: list[tuple[float, float]] = []
    done: list[Any] = []
    answer = None
    for end, trial in sorted(ends, key=lambda item: (item[0], item[1].number)):
        done.append(trial)
        ranked = ranked_trials_of(done, mode)
        if ranked and ranked[0] is not answer:
            answer = ranked[0]
            value = table.lookup(answer.params).best_value(metric, mode)
            curve.append((end, sign * (best_value - value)))
    return curve


def regret_at(curve: list[tuple[float, float]], at: float) -> float:
    """The regret of the answer at simulated time ``at``; NaN before the first COMPLETE trial."""
    value = math.nan
    for end, regret in curve:
        if end > at:
            break
        value = regret
    return value


def one_sweep(spec: dict[str, Any], strategy: str, scheduler: str, seed: int, trials: int,
              concurrency: int, folder: Path, table: CurveTable) -> Outcome:
    import optuna
    from finesweep.search.cli import main as finesweep

    name = f"{strategy}-{scheduler}-{seed}"
    spec = {**spec, "name": name, "strategy": {"name": strategy, "seed": seed}, "scheduler": {"name": scheduler},
            "budget": {**spec["budget"], "trials": trials},
            "resources": {**spec["resources"], "concurrency": concurrency}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    started = time.perf_counter()
    with open(folder / f"{name}.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        code = finesweep(["sweep", str(path), "--out", str(folder / name)])
    real = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"sweep {name} exited {code}; see {folder / f'{name}.log'}")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / name / 'study.db'}")
    # A failed trial (a recorded run that failed) took its slot for its epochs too.
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]
    ends = simulated_ends(finished, table, concurrency)
    curve = regret_curve(ends, table, spec["metric"], spec["mode"])
    return Outcome(strategy, scheduler, seed, curve, max((e for e, _ in ends), default=0.0), real,
                   len(study.trials), sum(t.state.name == "PRUNED" for t in study.trials))


def versions() -> str:
    parts = [f"python {platform.python_version()}"]
    for package in ("optuna", "ray"):
        parts.append(f"{package} {importlib.metadata.version(package)}")
    return ", ".join(parts)


def fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


def mean(values: Sequence[float]) -> float:
    """The mean, NaN when any value is (a seed without an answer yet)."""
    return math.nan if not values or any(math.isnan(v) for v in values) else sum(values) / len(values)


def full_trial_seconds(table: CurveTable) -> float:
    """The mean time of a whole run (every epoch of the table) over the configurations."""
    epochs = int(table.header["epochs"])
    return epochs * sum(c.epoch_seconds for c in table.configs.values()) / len(table.configs)


def report(outcomes: list[Outcome], table: CurveTable, args: argparse.Namespace, wall: float, command: str) -> str:
    from benchmarks.strategies import machine

    metric, mode = "val_acc", "max"
    best, best_value = table.best(metric, mode)
    full_trial = full_trial_seconds(table)
    horizon_trials = args.horizon_trials or args.trials
    horizon = math.ceil(horizon_trials / args.concurrency) * full_trial
    runs = sum(len(c.runs) for c in table.configs.values())
    times = [fraction * horizon for fraction in FRACTIONS]
    lines = [
        "# Replay benchmark: strategies x schedulers on recorded learning curves", "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()} in {wall:.0f} s.", "",
        f"- Versions: {versions()}",
        f"- Machine: {machine()}",
        f"- Curves: {len(table.configs)} configurations of the digits CNN ({runs} runs, 20 epochs each), recorded "
        f"by `{table.header.get('recorded_with')}` ({table.header.get('versions', {}).get('torch', '?')} torch); a "
        f"full 20-epoch run took {full_trial:.2f} s on average. Best configuration: "
        f"{_params(best.params)}, true val_acc {best_value:.4f} (best epoch, mean of {len(best.runs)} seeds).",
        f"- Sweeps: {args.trials} trials, {args.concurrency} at a time, strategies {', '.join(args.strategies)}, "
        f"schedulers {', '.join(args.schedulers)} at their default options, seeds {', '.join(map(str, args.seeds))}; "
        f"space as benchmarks/replay.yaml, time_scale {args.time_scale}.",
        f"- Simulated time (s): the sweep's wall time had it trained for real (see benchmarks/replay.py); the horizon "
        f"{horizon:.1f} s is what {horizon_trials} trials of 20 epochs take at concurrency {args.concurrency} "
        f"({math.ceil(horizon_trials / args.concurrency)} full trials per slot)."
        + (f" Equal time: each sweep had {args.trials} trials, so a scheduler that stops trials early spends the time "
           "it saves on more trials before the horizon." if horizon_trials != args.trials else ""),
        "- Regret: true val_acc of the table's best configuration minus that of the sweep's answer (its best "
        "COMPLETE trial by then), mean over seeds; `-` while some seed has no COMPLETE trial yet. Lower is better.",
        "",
        "| strategy | scheduler | " + " | ".join(f"regret @ {t:.1f} s" for t in times)
        + " | final regret | simulated end (s) | trials pruned | real s / sweep |",
        "|---|---|" + "---|" * (len(times) + 4),
    ]
    for strategy in args.strategies:
        for scheduler in args.schedulers:
            group = [o for o in outcomes if o.strategy == strategy and o.scheduler == scheduler]
            if not group:
                continue
            cells = [fmt(mean([regret_at(o.curve, t) for o in group])) for t in times]
            final = fmt(mean([regret_at(o.curve, math.inf) for o in group]))
            end = sum(o.simulated_end for o in group) / len(group)
            pruned = sum(o.pruned for o in group) / sum(o.trials for o in group)
            real = sum(o.real_seconds for o in group) / len(group)
            lines.append(f"| `{strategy}` | {scheduler} | " + " | ".join(cells)
                         + f" | {final} | {end:.1f} | {pruned:.0%} | {real:.1f} |")
    lines += ["", *summary_lines(outcomes, args, times)]
    return "\n".join(lines) + "\n"


def summary_lines(outcomes: list[Outcome], args: argparse.Namespace, times: list[float]) -> list[str]:
    """Per scheduler, the mean regret over strategies at each time: which scheduler gets there first."""
    lines = ["## Per scheduler, mean over strategies", "",
             "| scheduler | " + " | ".join(f"regret @ {t:.1f} s" for t in times) + " | final regret |",
             "|---|" + "---|" * (len(times) + 1)]
    for scheduler in args.schedulers:
        group = [o for o in outcomes if o.scheduler == scheduler]
        if group:
            cells = [fmt(mean([regret_at(o.curve, t) for o in group])) for t in [*times, math.inf]]
            lines.append(f"| {scheduler} | " + " | ".join(cells) + " |")
    return lines


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in params.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 strategies x 2 schedulers x 1 seed, 20 trials")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--schedulers", default=",".join(SCHEDULERS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--horizon-trials", type=int, default=None,
                        help="read regret up to the time this many whole trials take (default: --trials); with "
                             "more --trials, schedulers are compared at equal simulated time")
    parser.add_argument("--table", type=Path, default=None, help="another curve table than the spec's")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results file (markdown)")
    args = parser.parse_args(argv)
    if args.quick:
        args.strategies, args.schedulers, args.seeds, args.trials = "random,global", "none,asha", 1, 20
    args.strategies = args.strategies.split(",")
    args.schedulers = args.schedulers.split(",")
    args.seeds = list(range(args.seeds))
    command = "python -m benchmarks.replay" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    from finesweep.search.cluster import prepare_ray_environment

    prepare_ray_environment(None)  # Loopback only and the local token, before Ray's first import.
    from finesweep.search import ray_backend

    started = time.perf_counter()
    spec = load_spec()
    args.time_scale = spec["data"]["init_args"]["time_scale"]
    if args.table is not None:
        spec["data"]["init_args"]["path"] = str(args.table.resolve())
    table = CurveTable.read(spec["data"]["init_args"]["path"])
    ray_backend.start_ray(None)
    outcomes = []
    try:
        with tempfile.TemporaryDirectory(prefix="finesweep-replay-") as tmp:
            for seed in args.seeds:
                for strategy in args.strategies:
                    for scheduler in args.schedulers:
                        outcome = one_sweep(spec, strategy, scheduler, seed, args.trials, args.concurrency,
                                            Path(tmp), table)
                        outcomes.append(outcome)
                        print(f"{strategy:10s} {scheduler:10s} seed {seed}: final regret "
                              f"{fmt(regret_at(outcome.curve, math.inf))}, simulated {outcome.simulated_end:.1f} s, "
                              f"real {outcome.real_seconds:.1f} s", flush=True)
    finally:
        import ray

        ray.shutdown()
    text = report(outcomes, table, args, time.perf_counter() - started, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
