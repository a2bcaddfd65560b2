"""`launch.py train`: retrain one exported config alone; fit, then test on the best weights."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml
from finesweep.models.components import ComponentError
from finesweep.models.run import MetricNotLoggedError, NonFiniteMetricError, metric_split
from finesweep.search.cluster import placement, prepare_ray_environment
from finesweep.search.run_dir import CHECKPOINT_FILE, RESULT_FILE, RETRAIN_DIR, write_atomically
from finesweep.search.run_dir.files import cpu_count
from finesweep.search.spec import ResourcesSpec
from finesweep.search.trial import quiet_training_logs
from finesweep.search.user_code import import_roots
from finesweep.search.views.export import read_export


class RetrainError(RuntimeError):
    """The export cannot be trained as it is (its weights, its metric); nothing was kept."""


def _untrainable() -> tuple[type[BaseException], ...]:
    # Imported here: torch and Lightning are slow to import.
    from finesweep.models.common import CheckpointMismatch
    from finesweep.models.inference import UnreadableCheckpoint

    return CheckpointMismatch, ComponentError, UnreadableCheckpoint, MetricNotLoggedError, NonFiniteMetricError


def retrain(config_path: Path, out_dir: Path | None = None, out: TextIO | None = None, *,
            max_epochs: int | None = None, seed: int | None = None, workers: int | None = None) -> dict[str, float]:
    """Train the export at ``config_path`` (optionally longer, or with another seed) and print
    its validation metrics and the test metrics its ``test_step`` logs on the best weights. It
    trains on as many workers as its sweep's trials (``workers`` overrides): more than one is a
    Ray Train run on a local Ray (:func:`fit_on_workers`)."""
    # Imported here: torch and Lightning are slow to import.
    from finesweep.models.training import fit

    out = out or sys.stdout
    exported = read_export(config_path)
    untrainable = _untrainable()
    run = exported.run.with_changes(**{k: v for k, v in (("max_epochs", max_epochs), ("seed", seed))
                                       if v is not None})
    out_dir = out_dir or config_path.parent / RETRAIN_DIR
    created = [] if out_dir.exists() else [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet_training_logs()
    out.write(f"finesweep: retraining {exported.label} from {config_path} "
              f"({run.max_epochs} epochs, seed {run.seed})\n")
    out.flush()
    # The trial's thread count: the same number of intra-op threads gives the same sums. A
    # config from a bigger machine gets this machine's CPUs (more threads than CPUs only slow
    # torch down), and says so.
    threads = exported.record.get("threads")
    if isinstance(threads, int) and threads > cpu_count():
        out.write(f"finesweep: the trial ran with {threads} threads; this machine has {cpu_count()} CPUs: "
                  f"training with {cpu_count()} (sums may differ in the last digits)\n")
        threads = cpu_count()
    workers = workers or int(exported.record.get("workers") or 1)
    # The weights are kept aside until the run has finished: a failed run (a full disk, an
    # error in training) leaves an earlier retrain's model.pt and result.yaml as they were.
    training = out_dir / f".{CHECKPOINT_FILE}.training"
    try:
        try:
            if workers > 1:
                out.write(f"finesweep: training on {workers} workers (Ray Train, local Ray)\n")
                out.flush()
                result = fit_on_workers(run, workers, training, out_dir, threads, exported.record.get("spec_dir"))
            else:
                result = fit(run, checkpoint_path=training, evaluate_test=True,
                             threads=int(threads) if isinstance(threads, int) else None)
        except untrainable as error:  # The config cannot train here: one line, not a traceback.
            raise RetrainError(f"{config_path}: {type(error).__name__}: {error}") from None
        metrics = {**{k: float(v) for k, v in result.best.items()}, **(result.test or {}),
                   "best_epoch": result.best_epoch, "epochs": len(result.history),
                   "seconds": round(result.seconds, 2)}
        text = yaml.safe_dump({"config": str(config_path), "sweep_value": exported.value, "max_epochs": run.max_epochs,
                               "seed": run.seed, "data": result.data_summary, **metrics}, sort_keys=False)
        write_atomically(out_dir / f".{RESULT_FILE}.training", text)
        training.replace(out_dir / CHECKPOINT_FILE)
        (out_dir / f".{RESULT_FILE}.training").replace(out_dir / RESULT_FILE)
    except BaseException:
        training.unlink(missing_ok=True)
        (out_dir / f".{RESULT_FILE}.training").unlink(missing_ok=True)
        for folder in created:  # Nothing of a failed run left in folders it made.
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if result.data_summary:
        out.write(f"data: {result.data_summary}\n")
    same = run == exported.run
    sweep = f" (sweep: {exported.value:.4f})" if exported.value is not None and same else ""
    stopped = (f" (its callbacks stopped training after epoch {len(result.history)} of {run.max_epochs})"
               if result.stopped_early else "")
    out.write(f"best epoch {result.best_epoch}: {run.metric} {result.best[run.metric]:.4f}{sweep}{stopped}\n")
    out.write("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.best.items() if metric_split(k) == "val")
              + "\n")
    test = result.test or {}
    none = "none (the DataModule has no test_dataloader or the module no test_step)"
    out.write("test (held out): " + (", ".join(f"{k} {v:.4f}" for k, v in test.items()) or none) + "\n")
    out.write(f"weights: {out_dir / CHECKPOINT_FILE}\n")
    return metrics


def fit_on_workers(run: Any, workers: int, checkpoint: Path, out_dir: Path, threads: object,
                   spec_dir: str | None) -> Any:
    """Train ``run`` on ``workers`` Ray Train workers of a local Ray (one CPU each, or the
    export's threads); see :func:`train_on_workers`."""
    cpus = int(threads) if isinstance(threads, int) else 1
    if not placement.placeable([(cpu_count(), placement.local_gpus())], ResourcesSpec(cpus=cpus, workers=workers)):
        raise RetrainError(f"--workers {workers}: this machine has {cpu_count()} CPUs, fewer than "
                           f"{workers} workers of {cpus} CPU each")
    prepare_ray_environment(None)
    # Imported here: Ray is slow to import.
    from finesweep.search import ray_backend

    started = ray_backend.start_ray(None)
    try:
        return train_on_workers(run, workers=workers, cpus=cpus, checkpoint=checkpoint,
                                storage=out_dir.resolve() / ".ray", roots=import_roots(spec_dir) if spec_dir else ())
    finally:
        if started:
            ray_backend.stop_ray()


def train_on_workers(run: Any, *, workers: int, cpus: float, checkpoint: Path, storage: Path,
                     roots: Any = (), gpus: float = 0.0) -> Any:
    """Train ``run`` as one Ray Train run of ``workers`` workers on the Ray this process has
    started or joined, then evaluate its test split here, in one process, on rank 0's best
    weights (written to ``checkpoint``): a test step on every rank would see only its shard."""
    # Imported here: torch, Lightning and Ray are slow to import.
    import torch
    from finesweep.models.training import build, make_trainer, test
    from finesweep.search import ray_backend

    result, _ = ray_backend.fit_on_workers(run, workers=workers, cpus=cpus, gpus=gpus, checkpoint_path=str(checkpoint),
                                           storage=str(storage), name=f"train_{checkpoint.stem}", import_roots=roots)
    model, data = build(run)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    result.checkpoint = checkpoint
    result.test = test(make_trainer(run, []), model, data)
    return result
