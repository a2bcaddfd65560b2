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


BEST_FILE = "best.yaml"
# Where a plain export puts the single best trial while best.yaml holds the robust choice.
SINGLE_BEST_FILE = "best_single.yaml"
TOP_DIR = "top"


def rank_path(run_dir: Path, rank: int) -> Path:
    return run_dir / TOP_DIR / f"rank_{rank:02d}.yaml"


def write_rank(spec: SweepSpec, run_dir: Path, frozen: optuna.trial.FrozenTrial, rank: int,
               note: str = "", out_dir: Path | None = None) -> Path:
    """Write ``top/rank_NN.yaml`` for ``frozen`` into ``out_dir`` (default ``run_dir``);
    ``note`` goes into its header."""
    path = rank_path(Path(out_dir or run_dir), rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Rank {rank} of sweep {spec.name!r}{note}.\n"
    path.write_text(header + yaml.safe_dump(export_record(spec, run_dir, frozen, rank), sort_keys=False))
    return path


def robust_choice(run_dir: Path) -> int | None:
    """The trial of ``best.yaml`` when it is the robust choice of ``export --reseed`` (the
    trial ``robust.yaml`` chose); None when best.yaml is a plain export or missing."""
    from finesweep.search.robust import ROBUST_FILE  # robust builds on this module

    robust, best = run_dir / ROBUST_FILE, run_dir / BEST_FILE
    if not (robust.is_file() and best.is_file()):
        return None
    try:
        chosen = (yaml.safe_load(robust.read_text()) or {}).get("chosen_trial")
        exported = (yaml.safe_load(best.read_text()) or {}).get("trial")
    except (yaml.YAMLError, AttributeError):
        return None  # not files finesweep wrote; best.yaml is then treated as a plain export
    return chosen if chosen is not None and chosen == exported else None


def write_exports(spec: SweepSpec, run_dir: Path, ranked: list[optuna.trial.FrozenTrial],
                  top_k: int = 1) -> list[Path]:
    """Write ``best.yaml`` and, for ``top_k`` > 1, ``top/rank_NN.yaml``; return the paths.

    A ``best.yaml`` that holds the robust choice of ``export --reseed`` is kept: it was
    chosen on more evidence (new seeds) than the single best trial, which is written to
    ``best_single.yaml`` instead and comes first in the paths (see :func:`robust_choice`).
    """
    if not ranked:
        return []
    written = []
    name = SINGLE_BEST_FILE if robust_choice(run_dir) is not None else BEST_FILE
    path = run_dir / name
    header = (f"# Best trial of sweep {spec.name!r}, exported by finesweep.\n"
              + (f"# {BEST_FILE} holds the robust best of `export --reseed` instead; see robust.md.\n"
                 if name == SINGLE_BEST_FILE else "")
              + f"# Retrain it alone: python launch.py train {path}\n")
    path.write_text(header + yaml.safe_dump(export_record(spec, run_dir, ranked[0], 1), sort_keys=False))
    written.append(path)
    if top_k > 1:
        written += [write_rank(spec, run_dir, frozen, rank) for rank, frozen in enumerate(ranked[:top_k], start=1)]
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
