"""`launch.py train`: retrain one exported config alone and report val and held-out test metrics."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import yaml
from finesweep.search.export import read_export


def retrain(config_path: Path, out_dir: Path | None = None, out: TextIO | None = None) -> dict[str, float]:
    from finesweep.models.training import fit
    from finesweep.search.trial import quiet_training_logs

    out = out or sys.stdout
    exported = read_export(config_path)
    out_dir = out_dir or config_path.parent / "retrain"
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet_training_logs()
    out.write(f"finesweep: retraining {exported.task.name} from {config_path} "
              f"({exported.max_epochs} epochs, seed {exported.seed})\n")
    out.flush()
    result = fit(exported.task.name, exported.config, exported.data, max_epochs=exported.max_epochs,
                 seed=exported.seed, metric=exported.metric, mode=exported.mode,
                 checkpoint_path=out_dir / "model.pt", evaluate_test=True)
    metrics = {**{k: float(v) for k, v in result.best.items()}, **(result.test or {}),
               "best_epoch": result.best_epoch, "seconds": round(result.seconds, 2)}
    (out_dir / "result.yaml").write_text(yaml.safe_dump(
        {"config": str(config_path), "sweep_value": exported.value, **metrics}, sort_keys=False))
    sweep = f" (sweep: {exported.value:.4f})" if isinstance(exported.value, (int, float)) else ""
    out.write(f"best epoch {result.best_epoch}: {exported.metric} {result.best[exported.metric]:.4f}{sweep}\n")
    out.write("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.best.items() if k.startswith("val")) + "\n")
    out.write("test (held out): " + ", ".join(f"{k} {v:.4f}" for k, v in (result.test or {}).items()) + "\n")
    out.write(f"weights: {out_dir / 'model.pt'}\n")
    return metrics
