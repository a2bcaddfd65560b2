"""What distribution costs: one sweep run three ways, in one run, on this machine.

    python -m benchmarks.overhead            # full: 32 trials per arm, ASHA off and on (< 10 min)
    python -m benchmarks.overhead --quick    # 8 trials per arm, for a smoke test
    python -m benchmarks.overhead --raytune-asha   # also plain Ray Tune with ASHA (+4 min)

Arms (identical work: the same 32 digits-CNN configs, the same epochs, 2 at a time):
  (a) finesweep: `launch.py sweep` on benchmarks/overhead.yaml (grid over exactly those configs);
  (b) plain Optuna in one process, `study.optimize(n_jobs=2)`, the configs enqueued;
  (c) plain Ray Tune + OptunaSearch with Ray's default settings (a fresh worker per trial).
With ASHA on, arms (a) and (b) run again; (c) with ASHA only on request, since Ray's fresh
worker per trial makes it the longest arm by far and the run must stay under 10 minutes.
Plus the limit (each config trained alone, summed, divided by the 2 cores), per-trial overhead
(a trial's end to the next trial's first training step on the same worker), CPU utilisation
while trials run, driver peak memory after 32 and after 128 trials of one sweep, and a
Lightning-vs-raw-PyTorch parity figure. Results go to benchmarks/results/overhead.md; figures
are reported as ratios because this machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.overhead_measure import peak_mb_until, run_arm
from benchmarks.overhead_report import write_report

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPEC = ROOT / "benchmarks" / "overhead.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "overhead.md"
CONCURRENCY = 2


# --------------------------------------------------------------------------- workload


def workload(trials: int) -> tuple[list[dict[str, Any]], int]:
    """The fixed configs every arm trains, in one order, and the epochs per trial."""
    from finesweep.search.spec import parse_spec
    from finesweep.search.strategies.grid_search import grid_points

    spec = parse_spec(SPEC)
    points = sorted(grid_points(spec.space), key=lambda p: json.dumps(p, sort_keys=True))
    return points[:trials], spec.budget.max_epochs


def _params_of(point: dict[str, Any]) -> dict[str, Any]:
    """The searched values of a workload point (the points are those values already)."""
    return dict(point)


def training_run(point: dict[str, Any], epochs: int, seed: int) -> Any:
    """The run finesweep's trial would train for ``point``: the same model, data and Trainer."""
    from finesweep.models.run import TrainingRun
    from finesweep.search.spec import parse_spec

    spec = parse_spec(SPEC)
    return TrainingRun.from_config(spec.training_config(point), max_epochs=epochs, seed=seed,
                                   metric=spec.metric, mode=spec.mode)


# --------------------------------------------------------------------------- arms (each in its own process)


def arm_finesweep(trials: int, asha: bool, out: Path, task_spec: Path | None = None) -> dict[str, Any]:
    import yaml

    from benchmarks.timing import read_timings, with_timing

    # Each trial records its first step and end (the overheads) with the benchmark's callback.
    spec_text = with_timing(yaml.safe_load((task_spec or SPEC).read_text()), out / "timings")
    spec_text["budget"]["trials"] = trials
    if asha:
        spec_text["scheduler"] = {"name": "asha", "options": {"grace_period": 1, "reduction_factor": 3}}
    spec_path = out / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec_text))
    started = time.time()
    from finesweep.search.cli import main as finesweep

    # In this process, so the sampler outside measures the sweep's own driver.
    if finesweep(["sweep", str(spec_path), "--out", str(out / "run")]) != 0:
        raise RuntimeError("the finesweep arm failed")
    wall = time.time() - started
    import optuna

    study = optuna.load_study(study_name=spec_text["name"], storage=f"sqlite:///{out / 'run' / 'study.db'}")
    records = read_timings(out / "timings", drivers=(os.getpid(),))  # (the dry run's is the driver's)
    return {"wall": wall, "trials": len(study.trials), "records": records, "started": started}


def arm_optuna(trials: int, asha: bool, out: Path) -> dict[str, Any]:
    started = time.time()
    import optuna
    from finesweep.models.training import fit
    from finesweep.search.trial import quiet_training_logs

    from benchmarks.timing import TrialTiming, with_callback

    quiet_training_logs()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    configs, epochs = workload(trials)
    pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3) if asha
              else optuna.pruners.NopPruner())
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for config in configs:
        study.enqueue_trial(_params_of(config))
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    choices = {name: sorted({_params_of(c)[name] for c in configs}) for name in _params_of(configs[0])}

    def objective(trial: optuna.Trial) -> float:
        config = configs[trial.number]
        for name, values in choices.items():
            trial.suggest_categorical(name, values)  # returns the enqueued value
        timing = TrialTiming()

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            trial.report(metrics["val_acc"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            result = fit(with_callback(training_run(config, epochs, trial.number), timing),
                         on_epoch_end=on_epoch_end, threads=1)
            return result.best["val_acc"]
        finally:
            with lock:  # One process: a worker is a thread of study.optimize.
                records.append({**timing.record, "worker": timing.record.get("thread")})

    study.optimize(objective, n_trials=len(configs), n_jobs=CONCURRENCY)
    return {"wall": time.time() - started, "trials": len(study.trials), "records": records, "started": started}


def arm_raytune(trials: int, asha: bool, out: Path) -> dict[str, Any]:
    started = time.time()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep Ray on loopback, as finesweep does
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    configs, epochs = workload(trials)
    space = {name: tune.choice(sorted({c[name] for c in configs}, key=str)) for name in _params_of(configs[0])}

    timings = out / "timings"

    def trainable(config: dict[str, Any]) -> None:
        from finesweep.models.training import fit
        from finesweep.search.trial import quiet_training_logs

        from benchmarks.timing import TrialTiming, with_callback

        quiet_training_logs()

        def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
            tune.report(metrics)

        fit(with_callback(training_run(config, epochs, 0), TrialTiming(str(timings))), on_epoch_end=on_epoch_end,
            threads=1)

    ray.init(num_cpus=CONCURRENCY, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=1, reduction_factor=3)
                 if asha else FIFOScheduler())
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="val_acc", mode="max", num_samples=len(configs), max_concurrent_trials=CONCURRENCY,
            search_alg=OptunaSearch(points_to_evaluate=[_params_of(c) for c in configs]), scheduler=scheduler),
        run_config=tune.RunConfig(storage_path=str(out / "ray"), verbose=0),
    )
    grid = tuner.fit()
    from benchmarks.timing import read_timings

    records = read_timings(timings)  # Each trial's, written in its worker (``worker``: the pid)
    ray.shutdown()
    return {"wall": time.time() - started, "trials": len(grid), "records": records, "started": started}


ARMS = {"finesweep": arm_finesweep, "optuna": arm_optuna, "raytune": arm_raytune}


# --------------------------------------------------------------------------- the limit and the parity (in this process)


def limit_seconds(trials: int) -> float:
    """Each config trained alone from its first step to its last epoch, summed, over 2 cores."""
    from finesweep.models.training import fit
    from finesweep.search.trial import quiet_training_logs

    from benchmarks.timing import TrialTiming, with_callback

    quiet_training_logs()
    configs, epochs = workload(trials)
    total = 0.0
    for number, config in enumerate(configs):
        timing = TrialTiming()
        fit(with_callback(training_run(config, epochs, number), timing), threads=1)
        total += time.time() - timing.record["first_step_at"]
    return total / CONCURRENCY


def parity(repeats: int = 3) -> tuple[float, float]:
    """Seconds per epoch of the same model and batches: Lightning's loop vs a raw PyTorch loop."""
    import torch
    from finesweep.models.components import instantiate
    from finesweep.models.training import fit
    from finesweep.search.trial import quiet_training_logs
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from benchmarks.timing import TrialTiming, with_callback

    quiet_training_logs()
    configs, _ = workload(1)
    epochs = 5
    run = training_run(configs[0], epochs, 0)
    run = run.with_changes(model={**run.model, "init_args": {**run.model["init_args"], "lr_schedule": "constant"}})
    data = instantiate(run.data["class_path"], run.data["init_args"])
    data.setup()
    splits = data.splits

    def _loader(tensors, batch_size, shuffle, seed):
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle, generator=generator)

    lightning, raw = [], []
    for _ in range(repeats):
        timing = TrialTiming()
        fit(with_callback(run, timing), threads=1)
        lightning.append((time.time() - timing.record["first_step_at"]) / epochs)
        torch.manual_seed(0)
        model = instantiate(run.model["class_path"], run.model["init_args"])
        model.build_for(data.info)
        optimizer = model.configure_optimizers()  # lr_schedule constant: the optimizer alone
        began = time.time()
        for _epoch in range(epochs):
            model.train()
            for images, labels in _loader(splits.train, data.batch_size, True, 0):
                optimizer.zero_grad()
                F.cross_entropy(model(images), labels).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                for images, labels in _loader(splits.val, 512, False, 0):
                    logits = model(images)  # the same validation work as the Lightning module's
                    F.cross_entropy(logits, labels, reduction="sum")
                    (logits.argmax(dim=1) == labels).sum()
        raw.append((time.time() - began) / epochs)
    return statistics.median(lightning), statistics.median(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 trials per arm instead of 32")
    parser.add_argument("--raytune-asha", action="store_true",
                        help="also run plain Ray Tune with ASHA (about 4 more minutes)")
    parser.add_argument("--arm", choices=sorted(ARMS), help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--asha", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--task-spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        if args.arm == "finesweep":
            result = arm_finesweep(args.trials, args.asha, args.out, args.task_spec)
        else:
            result = ARMS[args.arm](args.trials, args.asha, args.out)
        (args.out / "result.json").write_text(json.dumps(result))
        return 0

    began = time.time()
    trials = 8 if args.quick else 32
    rows: dict[tuple[str, bool], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="finesweep-bench-") as tmp:
        workdir = Path(tmp)
        for asha in (False, True):
            for name in ("finesweep", "optuna", "raytune"):
                if asha and name == "raytune" and not args.raytune_asha:
                    continue
                print(f"running {name} ({'ASHA' if asha else 'no early stopping'}, {trials} trials)...", flush=True)
                rows[(name, asha)] = run_arm(name, trials, asha, workdir)
        print("measuring the limit and the Lightning parity...", flush=True)
        limit = limit_seconds(trials)
        lightning_epoch, raw_epoch = parity()
        memory_trials = (8, 32) if args.quick else (32, 128)
        print(f"driver memory over {memory_trials[1]} debug trials...", flush=True)
        long_sweep = run_arm("finesweep", memory_trials[1], False, workdir,
                             ["--task-spec", str(ROOT / "benchmarks" / "overhead_debug.yaml")])
        memory = {count: peak_mb_until(long_sweep, count) for count in memory_trials}
    elapsed = time.time() - began

    text = write_report(RESULTS, rows, quick=args.quick, trials=trials, concurrency=CONCURRENCY, elapsed=elapsed,
                        limit=limit, lightning_epoch=lightning_epoch, raw_epoch=raw_epoch,
                        memory_trials=memory_trials, memory=memory)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
