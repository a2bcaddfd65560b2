"""`launch.py train`: retrain one exported config alone; fit, then test on the best weights."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import yaml
from finesweep.models.run import metric_split
from finesweep.search.export import read_export
from finesweep.search.run_dir import CHECKPOINT_FILE, RESULT_FILE, RETRAIN_DIR


def retrain(config_path: Path, out_dir: Path | None = None, out: TextIO | None = None, *,
            max_epochs: int | None = None, seed: int | None = None) -> dict[str, float]:
    """Train the export at ``config_path`` (optionally longer, or with another seed) and print
    its validation metrics and the test metrics its ``test_step`` logs on the best weights."""
    from finesweep.models.simulation import is_simulated
    from finesweep.models.training import fit
    from finesweep.search.spec import Problem, SpecError
    from finesweep.search.trial import quiet_training_logs

    out = out or sys.stdout
    exported = read_export(config_path)
    run = exported.run.with_changes(**{k: v for k, v in (("max_epochs", max_epochs), ("seed", seed))
                                       if v is not None})
    if is_simulated(run):
        raise SpecError(str(config_path), [Problem(
            ("model", "class_path"), "a LightningModule to train", f"{run.model['class_path']}, a simulated model",
            "a simulated model (e.g. the replay task) only stands in for training inside sweeps")])
    out_dir = out_dir or config_path.parent / RETRAIN_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet_training_logs()
    out.write(f"finesweep: retraining {exported.label} from {config_path} "
              f"({run.max_epochs} epochs, seed {run.seed})\n")
    out.flush()
    # The trial's thread count: the same number of intra-op threads gives the same sums.
    threads = exported.record.get("threads")
    result = fit(run, checkpoint_path=out_dir / CHECKPOINT_FILE, evaluate_test=True,
                 threads=int(threads) if isinstance(threads, int) else None)
    if result.data_summary:
        out.write(f"data: {result.data_summary}\n")
    metrics = {**{k: float(v) for k, v in result.best.items()}, **(result.test or {}),
               "best_epoch": result.best_epoch, "epochs": len(result.history), "seconds": round(result.seconds, 2)}
    (out_dir / RESULT_FILE).write_text(yaml.safe_dump(
        {"config": str(config_path), "sweep_value": exported.value, "max_epochs": run.max_epochs,
         "seed": run.seed, "data": result.data_summary, **metrics}, sort_keys=False))
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
