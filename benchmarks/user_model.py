"""The user's own model swept three ways, in one run: finesweep vs plain Ray Tune vs plain Optuna.

    python -m benchmarks.user_model            # 6 trials x 3 epochs per arm, each arm twice
    python -m benchmarks.user_model --repeat 1

The workload is examples/wine (a plain LightningModule + LightningDataModule): the same search
space, 6 trials of at most 3 epochs, 2 at a time, early stopping by successive halving.
  (a) finesweep: `launch.py sweep examples/wine/sweep.yaml` (TPE via `global`, ASHA);
  (b) plain Ray Tune: a trainable with Lightning + TuneReportCheckpointCallback, OptunaSearch,
      ASHAScheduler, as Ray's docs show it;
  (c) plain Optuna: an objective that trains with Lightning, a pruning callback that reports
      val_loss each epoch (what optuna-integration's callback does; its own is built on
      `lightning.pytorch`, which does not take `pytorch_lightning` modules), TPE,
      SuccessiveHalvingPruner, study.optimize(n_jobs=2).
Each arm is one fresh process, timed from its start to its end (imports, Ray start-up, every
trial), so the figures are what a user waits for. Arms alternate and each runs ``--repeat``
times; the medians are compared as ratios because this machine is noisy. Results go to
benchmarks/results/user_model.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "wine"
RESULTS = ROOT / "benchmarks" / "results" / "user_model.md"
TRIALS, EPOCHS, CONCURRENCY = 6, 3, 2


def _train(config: dict, callbacks: list) -> object:
    import pytorch_lightning as pl
    from wine_model import WineData, WineMLP

    model = WineMLP(lr=config["lr"], hidden=config["hidden"], dropout=config["dropout"], weight_decay=0.0)
    data = WineData(batch_size=config["batch_size"])
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                         callbacks=callbacks)
    trainer.fit(model, datamodule=data)
    return trainer


def arm_raytune() -> float:
    import ray
    from ray import tune
    from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)

    def trainable(config: dict) -> None:
        import sys as worker_sys

        worker_sys.path.insert(0, str(EXAMPLE))
        _train(config, [TuneReportCheckpointCallback({"val_loss": "val_loss"}, on="validation_end",
                                                     save_checkpoints=False)])

    space = {"lr": tune.loguniform(1e-3, 1e-1), "hidden": tune.lograndint(8, 65), "dropout": tune.uniform(0.0, 0.5),
             "batch_size": tune.choice([16, 32])}
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=TRIALS,
                                    max_concurrent_trials=CONCURRENCY,
                                    search_alg=OptunaSearch(seed=0),
                                    scheduler=ASHAScheduler(max_t=EPOCHS, grace_period=1, reduction_factor=3)),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="fs-bench-"), verbose=0),
    )
    best = tuner.fit().get_best_result().metrics["val_loss"]
    ray.shutdown()
    return float(best)


def arm_optuna() -> float:
    import optuna
    import pytorch_lightning as pl

    class Pruning(pl.Callback):
        def __init__(self, trial: optuna.Trial) -> None:
            self.trial = trial

        def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            self.trial.report(float(trainer.callback_metrics["val_loss"]), step=trainer.current_epoch)
            if self.trial.should_prune():
                raise optuna.TrialPruned()

    def objective(trial: optuna.Trial) -> float:
        config = {"lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True),
                  "hidden": trial.suggest_int("hidden", 8, 64, log=True),
                  "dropout": trial.suggest_float("dropout", 0.0, 0.5),
                  "batch_size": trial.suggest_categorical("batch_size", [16, 32])}
        trainer = _train(config, [Pruning(trial)])
        return float(trainer.callback_metrics["val_loss"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
    study.optimize(objective, n_trials=TRIALS, n_jobs=CONCURRENCY)
    return float(study.best_value)


def arm_finesweep() -> float:
    import yaml

    run_dir = Path(tempfile.mkdtemp(prefix="fs-bench-")) / "run"
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "sweep", str(EXAMPLE / "sweep.yaml"),
                           "--out", str(run_dir), "--trials", str(TRIALS), "--max-epochs", str(EPOCHS),
                           "--concurrency", str(CONCURRENCY)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
    record = [line[3:] for line in (run_dir / "best.yaml").read_text().splitlines() if line.startswith("#% value")]
    return float(yaml.safe_load(record[0])["value"])


ARMS = {"finesweep": arm_finesweep, "raytune": arm_raytune, "optuna": arm_optuna}
LABELS = {"finesweep": "(a) finesweep", "raytune": "(b) plain Ray Tune", "optuna": "(c) plain Optuna"}


def run_arm(name: str) -> dict:
    """One arm in a fresh process, timed from the process's start to its end."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.user_model", "--arm", name], cwd=ROOT,
                          capture_output=True, text=True, env={**__import__("os").environ,
                                                               "PYTHONPATH": str(EXAMPLE)})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"arm {name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return {"seconds": seconds, "best": json.loads(done.stdout.strip().splitlines()[-1])["best"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", choices=sorted(ARMS), help="(internal) run one arm and print its best value")
    parser.add_argument("--repeat", type=int, default=2, help="runs per arm, alternating (default 2)")
    args = parser.parse_args(argv)
    if args.arm:
        sys.path.insert(0, str(EXAMPLE))
        print(json.dumps({"best": ARMS[args.arm]()}))
        return 0
    runs: dict[str, list[dict]] = {name: [] for name in ARMS}
    for round_number in range(args.repeat):
        for name in ARMS:
            runs[name].append(run_arm(name))
            print(f"round {round_number + 1}: {name} {runs[name][-1]['seconds']:.1f} s, "
                  f"best val_loss {runs[name][-1]['best']:.4f}", flush=True)
    median = {name: statistics.median(r["seconds"] for r in results) for name, results in runs.items()}
    versions = {p: importlib.metadata.version(p) for p in ("optuna", "ray", "torch", "pytorch-lightning")}
    lines = [
        "# Your own model, three ways: finesweep vs plain Ray Tune vs plain Optuna", "",
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, {__import__('os').cpu_count()} cores "
        f"(`python -m benchmarks.user_model --repeat {args.repeat}`); "
        + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", "",
        f"Workload: examples/wine (WineMLP + WineData, plain Lightning), {TRIALS} trials x {EPOCHS} epochs, "
        f"{CONCURRENCY} at a time, successive-halving early stopping. Wall time of each arm's whole process "
        "(imports, Ray start-up, all trials), median of the runs; arms alternate.", "",
        "| arm | runs (s) | median (s) | / finesweep | best val_loss per run |", "|---|---|---|---|---|",
    ]
    for name, results in runs.items():
        seconds = ", ".join(f"{r['seconds']:.1f}" for r in results)
        bests = ", ".join(f"{r['best']:.4f}" for r in results)
        lines.append(f"| {LABELS[name]} | {seconds} | {median[name]:.1f} | "
                     f"{median[name] / median['finesweep']:.2f} | {bests} |")
    lines += ["", f"finesweep / plain Ray Tune: **{median['finesweep'] / median['raytune']:.2f}** (target <= 1.0); "
              f"finesweep / plain Optuna: **{median['finesweep'] / median['optuna']:.2f}**.", ""]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
