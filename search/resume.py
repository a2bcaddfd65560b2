"""Resuming and extending a sweep: what may change between runs, and what was left running.

The study database is the only state a resume needs. Trials that were RUNNING when the
driver died are handed out again as they are (same trial record, same parameters, same
seed), so nothing finished is lost or repeated and the total stays at the requested number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from finesweep.search.space import CategoricalParam

if TYPE_CHECKING:
    import optuna
    from finesweep.search.spec import SweepSpec

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass(frozen=True)
class SpecChanges:
    incompatible: list[str] = field(default_factory=list)
    compatible: list[str] = field(default_factory=list)


def compare_specs(old: SweepSpec, new: SweepSpec) -> SpecChanges:
    """Changes that would make old and new trials incomparable are incompatible: the name, the
    model class, the data (class and arguments), the metric and its direction, and the kind of a
    searched parameter. The model's fixed arguments and Trainer options may change (listed)."""
    changes = SpecChanges()
    # The name is the study's key in its database and names the exports: another name
    # would start a second study beside the first and overwrite its best.yaml.
    for label, before, after in (("name", old.name, new.name), ("model", old.model.class_path, new.model.class_path),
                                 ("data", old.data.as_config(), new.data.as_config()),
                                 ("metric", old.metric, new.metric), ("mode", old.mode, new.mode)):
        if before != after:
            changes.incompatible.append(f"{label} changed from {before!r} to {after!r}")
    old_params = {p.name: p for p in old.space.params}
    for param in new.space.params:
        before = old_params.pop(param.name, None)
        if before is None:
            changes.compatible.append(f"new parameter {param.name!r} (earlier trials lack it)")
        elif type(before) is not type(param):
            changes.incompatible.append(
                f"parameter {param.name!r} changed kind from {_kind(before)} to {_kind(param)}")
        elif before != param:
            changes.compatible.append(f"parameter {param.name!r} changed range or choices")
    changes.compatible.extend(f"parameter {name!r} no longer searched" for name in old_params)
    if dict(old.space.fixed) != dict(new.space.fixed) or old.model.init_args != new.model.init_args:
        changes.compatible.append("fixed values changed")
    if dict(old.trainer) != dict(new.trainer):
        changes.compatible.append("trainer options changed")
    for label in ("budget", "strategy", "scheduler", "resources"):
        if getattr(old, label) != getattr(new, label):
            changes.compatible.append(f"{label} changed")
    return changes


def _kind(param: Any) -> str:
    return "categorical" if isinstance(param, CategoricalParam) else type(param).__name__[:-5].lower()


def finished_count(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED)


def interrupted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials left RUNNING by a driver that died: they are run again, once, as they were."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
