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
from typing import Any, Literal

from finesweep.search.space import SearchSpace
from finesweep.search.spec.fields import FieldChecks
from finesweep.search.spec.paths import resolve_relative
from finesweep.search.spec.problems import KeyPath, SpecError
from finesweep.search.spec.typed import number_type, options_of, refusals, rule_type

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


# The budget and resources sections are typed dataclasses: jsonargparse checks each value
# against its field's type, bounds included (spec/typed.py), and a refusal is said in our words.
PositiveInt = number_type(int, low=1)
NonNegativeInt = number_type(int, low=0)
PositiveFloat = number_type(float, low=0, low_open=True)
Workers = number_type(int, low=1, high=1024)


def _shareable(gpus: float) -> bool:
    return gpus <= 1 or float(gpus).is_integer()


# A fraction of one device or whole devices: Ray shares a GPU only in fractions of one.
ShareableGpus = rule_type(number_type(float, low=0), _shareable, "a fraction below 1 or a whole number of GPUs",
                          "Ray shares a GPU only in fractions of one device")


@dataclass(frozen=True)
class BudgetSpec:
    trials: PositiveInt = 20
    max_epochs: PositiveInt = 10
    time_limit_s: PositiveFloat | None = None
    # A trial that reports no epoch for this long is killed and recorded FAIL.
    trial_timeout_s: PositiveFloat | None = None
    # The sweep stops (exit 2, the rest resumable) once this many trials in a row failed with
    # the same error (type and message, numbers and paths aside); 0 never stops it.
    stop_after_failures: NonNegativeInt = 3


@dataclass(frozen=True)
class ResourcesSpec:
    cpus: PositiveFloat = 1.0
    gpus: ShareableGpus = 0.0
    concurrency: PositiveInt = 2
    # Memory a trial may allocate beyond its loaded worker; over it, the trial fails.
    memory_mb: PositiveFloat | None = None
    # Processes one trial trains in (Ray Train, one Lightning rank each); cpus and gpus are per
    # worker. 1 runs the trial in its Tune worker as before.
    workers: Workers = 1
    strategy: Literal["ddp", "fsdp"] = "ddp"
    # Ray's placement of a trial's workers: as few nodes as fit (pack) or one per node where it can (spread).
    placement: Literal["pack", "spread"] = "pack"


def check_checkpoints(checks: FieldChecks, value: Any) -> int | None:
    entry = checks.mapping(value, ("checkpoints",), ["keep_best"])
    if "keep_best" not in entry:
        return DEFAULT_KEEP_BEST
    if entry["keep_best"] is None:
        return None
    return checks.number(entry["keep_best"], ("checkpoints", "keep_best"), integer=True, low=1)


def check_strategy(checks: FieldChecks, value: Any, space: SearchSpace) -> StrategySpec:
    # The strategies bring Optuna and numpy, and import this package (spec.typed): not at the top.
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
    # Imported here: the run directory's reader reads YAML with this package's loader, so a
    # top-level import would make the spec package and the reader import each other.
    from finesweep.search.run_dir.files import read_record

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
    # The schedulers import this package (spec.typed): at the top, importing them first would fail.
    from finesweep.search.schedulers import SCHEDULER_OPTIONS, SCHEDULERS

    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, dict):
        value = misplaced_options(checks, value, ("scheduler",), ["name", "options"],
                                  {n: list(o) for n, o in SCHEDULERS.items()})
    entry = checks.mapping(value, ("scheduler",), ["name", "options"])
    name = entry.get("name", "asha")
    if checks.string(name, ("scheduler", "name"), sorted(SCHEDULERS)) is None:
        return SchedulerSpec()
    options = typed_section(checks, SCHEDULER_OPTIONS[name], entry.get("options"), ("scheduler", "options"))
    return SchedulerSpec(name=name, options=options)


def check_budget(checks: FieldChecks, value: Any) -> BudgetSpec:
    return BudgetSpec(**typed_section(checks, BudgetSpec, value, ("budget",), field_order=True))


def check_resources(checks: FieldChecks, value: Any) -> ResourcesSpec:
    return ResourcesSpec(**typed_section(checks, ResourcesSpec, value, ("resources",), field_order=True))


def typed_section(checks: FieldChecks, schema: Any, value: Any, path: KeyPath, *,
                  field_order: bool = False) -> dict[str, Any]:
    """The keys of ``value`` that are fields of ``schema`` and hold a value of the field's
    type; a problem for each other key (in the order written, or with ``field_order`` in the
    order of ``schema``'s fields). A field left out or refused takes its default."""
    entry = checks.mapping(value, path, list(options_of(schema)))
    if field_order:
        entry = {key: entry[key] for key in options_of(schema) if key in entry}
    accepted, refused = refusals(schema, entry)
    for refusal in refused:
        checks.problem((*path, refusal.key), refusal.expected, refusal.found, refusal.hint)
    return accepted
