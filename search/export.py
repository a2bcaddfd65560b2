"""`best.yaml`: the full, reproducible training config of a sweep's best trial(s).

The export holds everything `launch.py train` needs (task, resolved data settings, the
complete training config with defaults and fixed values, epochs, seed) plus provenance:
metric and value, trial number, checkpoint path and library versions. It is read back
with the same validation as a spec, so a hand-edited export gets the same clear errors.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from finesweep.models.tasks import TASKS, TaskInfo
from finesweep.search.spec import Problem, SpecChecker, SpecError, load_yaml
from finesweep.search.trial import trial_dir

if TYPE_CHECKING:
    import optuna
    from finesweep.search.spec import SweepSpec

EXPORT_FORMAT = 1
EXPORT_KEYS = ("finesweep_export", "sweep", "task", "data", "config", "max_epochs", "seed",
               "metric", "mode", "value", "best_epoch", "trial", "rank", "params", "checkpoint",
               "versions", "exported_at")
VERSIONED = ("finesweep", "optuna", "ray", "torch", "pytorch-lightning", "tensorboard")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def export_record(spec: SweepSpec, run_dir: Path, frozen: optuna.trial.FrozenTrial, rank: int) -> dict[str, Any]:
    checkpoint = trial_dir(run_dir, frozen.number) / "model.pt"
    return {
        "finesweep_export": EXPORT_FORMAT,
        "sweep": spec.name,
        "task": spec.task.name,
        "data": spec.resolved_data(),
        "config": dict(frozen.user_attrs["config"]),
        "max_epochs": spec.budget.max_epochs,
        "seed": int(frozen.user_attrs["seed"]),
        "metric": spec.metric,
        "mode": spec.mode,
        "value": float(frozen.value),
        "best_epoch": frozen.user_attrs.get("best_epoch"),
        "trial": frozen.number,
        "rank": rank,
        "params": dict(frozen.params),
        "checkpoint": str(checkpoint.resolve()) if checkpoint.exists() else None,
        "versions": library_versions(),
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_exports(spec: SweepSpec, run_dir: Path, ranked: list[optuna.trial.FrozenTrial],
                  top_k: int = 1) -> list[Path]:
    """Write ``best.yaml`` and, for ``top_k`` > 1, ``top/rank_NN.yaml``; return the paths."""
    if not ranked:
        return []
    written = []
    header = (f"# Best trial of sweep {spec.name!r}, exported by finesweep.\n"
              f"# Retrain it alone: python launch.py train {run_dir / 'best.yaml'}\n")
    path = run_dir / "best.yaml"
    path.write_text(header + yaml.safe_dump(export_record(spec, run_dir, ranked[0], 1), sort_keys=False))
    written.append(path)
    if top_k > 1:
        (run_dir / "top").mkdir(exist_ok=True)
        for rank, frozen in enumerate(ranked[:top_k], start=1):
            path = run_dir / "top" / f"rank_{rank:02d}.yaml"
            path.write_text(f"# Rank {rank} of sweep {spec.name!r}.\n"
                            + yaml.safe_dump(export_record(spec, run_dir, frozen, rank), sort_keys=False))
            written.append(path)
    return written


@dataclass(frozen=True)
class ExportedConfig:
    task: TaskInfo
    data: Mapping[str, Any]
    config: Mapping[str, Any]
    max_epochs: int
    seed: int
    metric: str
    mode: str
    value: float | None
    source: str


def read_export(path: str | Path) -> ExportedConfig:
    """Load and check an exported config; raise SpecError listing every problem."""
    data, marks = load_yaml(path)
    checker = SpecChecker(str(path), marks)
    if not isinstance(data, dict):
        raise SpecError(str(path), [Problem((), "an exported config (best.yaml)", type(data).__name__)])
    data = checker.mapping(data, (), EXPORT_KEYS)
    for key in ("task", "data", "config", "max_epochs", "seed", "metric"):
        if key not in data:
            checker.problem((key,), f"a `{key}:` entry", "none", "export it with `launch.py export RUN_DIR`")
    task = TASKS.get(data.get("task")) if checker.string(data.get("task"), ("task",), sorted(TASKS)) else None
    config: dict[str, Any] = {}
    if task is not None:
        fields = task.config_fields()
        config = checker.mapping(data.get("config"), ("config",), list(fields))
        for key, value in config.items():
            checker.field_value(value, fields[key], ("config", key))
        data_fields = task.data_fields()
        for key, value in checker.mapping(data.get("data"), ("data",), list(data_fields)).items():
            checker.field_value(value, data_fields[key], ("data", key))
        if data.get("metric") not in task.metrics:
            checker.problem(("metric",), f"one of {', '.join(task.metrics)}", repr(data.get("metric")))
    epochs = checker.number(data.get("max_epochs"), ("max_epochs",), integer=True, low=1)
    seed = checker.number(data.get("seed"), ("seed",), integer=True, low=0)
    if checker.problems:
        raise SpecError(str(path), checker.problems)
    return ExportedConfig(task=task, data=dict(data.get("data") or {}), config=config,
                          max_epochs=int(epochs), seed=int(seed), metric=data["metric"],
                          mode=data.get("mode") or task.metrics[data["metric"]],
                          value=data.get("value"), source=str(path))
