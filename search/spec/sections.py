"""The sweep's run settings: ``strategy:``, ``scheduler:``, ``budget:``, ``resources:`` and
``checkpoints:``, each checked by one function into its typed object.

The options of a strategy are the keyword arguments of its sampler factory and those of a
scheduler the fields of its options class; budget and resources are dataclasses. Their types
and value rules are declared on them and checked by :mod:`~finesweep.search.spec.typed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finesweep.search.space import SearchSpace
from finesweep.search.spec.fields import FieldChecks, choice_rule, number_rule
from finesweep.search.spec.paths import resolve_relative
from finesweep.search.spec.problems import KeyPath, SpecError
from finesweep.search.views.export import read_record

# Trial seeds are the strategy seed plus the trial number, and numpy and Lightning take seeds
# below 2**32: this leaves room for two billion trials.
MAX_SEED = 2**31 - 1

# Trials whose model.pt is kept after a sweep (for ensembles and retraining); null keeps all.
DEFAULT_KEEP_BEST = 5

@dataclass(frozen=True)
class StrategySpec:
    name: str = "global"
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass(frozen=True)
class SchedulerSpec:
    name: str = "asha"
    options: Mapping[str, Any] = field(default_factory=dict)


# The budget and resources sections are plain numbers: each field declares its rule, and
# SpecChecker.record checks a section against them.


@dataclass(frozen=True)
class BudgetSpec:
    trials: int = field(default=20, metadata=number_rule(integer=True, low=1))
    max_epochs: int = field(default=10, metadata=number_rule(integer=True, low=1))
    time_limit_s: float | None = field(default=None, metadata=number_rule(low=0, low_open=True))
    # A trial that reports no epoch for this long is killed and recorded FAIL.
    trial_timeout_s: float | None = field(default=None, metadata=number_rule(low=0, low_open=True))
    # The sweep stops (exit 2, the rest resumable) once this many trials in a row failed with
    # the same error (type and message, numbers and paths aside); 0 never stops it.
    stop_after_failures: int = field(default=3, metadata=number_rule(integer=True, low=0))


def _shareable_gpus(gpus: float) -> bool:
    return gpus <= 1 or float(gpus).is_integer()


@dataclass(frozen=True)
class ResourcesSpec:
    cpus: float = field(default=1.0, metadata=number_rule(low=0, low_open=True))
    gpus: float = field(default=0.0, metadata=number_rule(low=0, also=(
        _shareable_gpus, "a fraction below 1 or a whole number of GPUs",
        "Ray shares a GPU only in fractions of one device")))
    concurrency: int = field(default=2, metadata=number_rule(integer=True, low=1))
    # Memory a trial may allocate beyond its loaded worker; over it, the trial fails.
    memory_mb: float | None = field(default=None, metadata=number_rule(low=0, low_open=True))
    # Processes one trial trains in (Ray Train, one Lightning rank each); cpus and gpus are per
    # worker. 1 runs the trial in its Tune worker as before.
    workers: int = field(default=1, metadata=number_rule(integer=True, low=1, high=1024))
    strategy: str = field(default="ddp", metadata=choice_rule("ddp", "fsdp"))
    # Ray's placement of a trial's workers: as few nodes as fit (pack) or one per node where it can (spread).
    placement: str = field(default="pack", metadata=choice_rule("pack", "spread"))


def check_checkpoints(checks: FieldChecks, value: Any) -> int | None:
    entry = checks.mapping(value, ("checkpoints",), ["keep_best"])
    if "keep_best" not in entry:
        return DEFAULT_KEEP_BEST
    if entry["keep_best"] is None:
        return None
    return checks.number(entry["keep_best"], ("checkpoints", "keep_best"), integer=True, low=1)


def check_strategy(checks: FieldChecks, value: Any, space: SearchSpace) -> StrategySpec:
    from finesweep.search.strategies import STRATEGIES, check_options

    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, dict):
        value = misplaced_options(checks, value, ("strategy",), ["name", "options", "seed"],
                                       {n: list(s.options) for n, s in STRATEGIES.items()})
    entry = checks.mapping(value, ("strategy",), ["name", "options", "seed"])
    name = entry.get("name", "global")
    if checks.string(name, ("strategy", "name"), sorted(STRATEGIES)) is None:
        return StrategySpec()
    options = checks.mapping(entry.get("options"), ("strategy", "options"),
                           list(STRATEGIES[name].options))
    if isinstance(options.get("start_from"), str):
        # A file is read here, once: the sampler receives the point, never a path.
        point = start_point(checks, options["start_from"])
        if point is None:
            return StrategySpec(name=name)
        options = {**options, "start_from": point}
    for key, expected, found in check_options(name, options, space):
        checks.problem(("strategy", "options", key) if key else ("strategy", "name"), expected, found)
    seed = entry.get("seed")
    if seed is not None:
        seed = checks.number(seed, ("strategy", "seed"), integer=True, low=0, high=MAX_SEED)
    return StrategySpec(name=name, options=options, seed=seed)


def misplaced_options(checks: FieldChecks, entry: dict[str, Any], path: KeyPath, keys: list[str],
                      options: Mapping[str, list[str]]) -> dict[str, Any]:
    """``entry`` without the keys that are options of some strategy (or scheduler) written
    beside ``name:``, each reported with where it belongs."""
    kept = {}
    for key, value in entry.items():
        owners = [n for n, known in options.items() if key in known]
        if key in keys or not owners:
            kept[key] = value
            continue
        name = entry.get("name") if entry.get("name") in owners else owners[0]
        checks.problem((*path, key), f"one of the keys {', '.join(keys)}", f"{key!r} beside `name:`",
                     f"{key} is an option of {name}: write it under `options:` ({path[0]}: "
                     f"{{name: {name}, options: {{{key}: ...}}}})")
    return kept


def start_point(checks: FieldChecks, value: str) -> dict[str, Any] | None:
    """The searched values of an exported trial (best.yaml's ``#% params``), the file's path
    taken relative to the spec's folder; None (and a problem) when it has none."""
    path = Path(resolve_relative(value, checks.base_dir))
    at = ("strategy", "options", "start_from")
    try:
        params = read_record(path).get("params")
    except SpecError as error:
        checks.problem(at, "a readable best.yaml", "; ".join(p.found for p in error.problems))
        return None
    if not isinstance(params, dict):
        checks.problem(at, "a best.yaml with finesweep's record of the trial's params (launch.py export "
                     "writes one)", f"{value!r} without one")
        return None
    return params


def check_scheduler(checks: FieldChecks, value: Any) -> SchedulerSpec:
    from finesweep.search.schedulers import SCHEDULERS

    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, dict):
        value = misplaced_options(checks, value, ("scheduler",), ["name", "options"],
                                       {n: list(o) for n, o in SCHEDULERS.items()})
    entry = checks.mapping(value, ("scheduler",), ["name", "options"])
    name = entry.get("name", "asha")
    if checks.string(name, ("scheduler", "name"), sorted(SCHEDULERS)) is None:
        return SchedulerSpec()
    known = SCHEDULERS[name]
    options = checks.mapping(entry.get("options"), ("scheduler", "options"), list(known))
    for key, option_value in options.items():
        default = known[key]
        # Ray asserts reduction_factor > 1 (HyperBand divides by its logarithm).
        low = 2 if key == "reduction_factor" else 1 if isinstance(default, int) else 0
        checks.number(option_value, ("scheduler", "options", key), integer=isinstance(default, int),
                    low=low)
    return SchedulerSpec(name=name, options=options)


def check_budget(checks: FieldChecks, value: Any) -> BudgetSpec:
    return checks.record(BudgetSpec, value, ("budget",))


def check_resources(checks: FieldChecks, value: Any) -> ResourcesSpec:
    return checks.record(ResourcesSpec, value, ("resources",))
