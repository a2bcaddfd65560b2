"""The sweep spec: one YAML file parsed once into typed objects, with every problem reported at once.

Validation collects :class:`~finesweep.search.spec.problems.Problem` objects (file, line, key
path, expected, found, hint) instead of stopping at the first one, and nothing here starts Ray,
so a wrong spec is rejected before any compute or any file is written. The checks live beside
what they check: the YAML loader in
:mod:`~finesweep.search.spec.loading`, single values and storage in
:mod:`~finesweep.search.spec.fields`, the model, data and trainer sections in
:mod:`~finesweep.search.spec.components` (nested classes in :mod:`~finesweep.search.spec.classes`,
path arguments in :mod:`~finesweep.search.spec.paths`), the space in
:mod:`~finesweep.search.spec.space_rules`; :class:`SpecChecker` puts them together with the strategy
and scheduler sections.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finesweep.models.tasks import TASKS, TaskAlias
from finesweep.search.space import SearchSpace
from finesweep.search.spec import classes as spec_classes
from finesweep.search.spec import components as sc
from finesweep.search.spec.choices import deferred_arguments
from finesweep.search.spec.components import Component
from finesweep.search.spec.fields import choice_rule, number_rule
from finesweep.search.spec.loading import parse_yaml_text, read_text, spec_dir_of
from finesweep.search.spec.objectives import (
    Objective,
    Selection,
    check_bounds,
    check_objectives,
    check_select,
    check_strategy_and_scheduler,
)
from finesweep.search.spec.paths import resolve_relative
from finesweep.search.spec.problems import KeyPath, Problem, SpecError, describe
from finesweep.search.spec.space_rules import SpaceRules
from finesweep.search.views.export import read_record

# Trial seeds are the strategy seed plus the trial number, and numpy and Lightning take seeds
# below 2**32: this leaves room for two billion trials.
MAX_SEED = 2**31 - 1

TOP_LEVEL_KEYS = (
    "name", "description", "task", "model", "data", "trainer", "metric", "mode", "space", "strategy",
    "scheduler", "budget", "resources", "storage", "max_failures", "checkpoints", "objectives", "constraints",
    "select",
)
# Trials whose model.pt is kept after a sweep (for ensembles and retraining); null keeps all.
DEFAULT_KEEP_BEST = 5
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The name becomes a folder name (runs/<name>) and a study key: well below the 255 bytes
# a file system allows for one name.
MAX_NAME_LENGTH = 100


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


@dataclass(frozen=True)
class SweepSpec:
    name: str
    # The built-in task the spec named by its short name, or None for a model named by class path.
    task: TaskAlias | None
    model: Component
    data: Component
    # Fixed Trainer options (LightningCLI's `trainer:` section).
    trainer: Mapping[str, Any]
    metric: str
    mode: str
    space: SearchSpace
    strategy: StrategySpec
    scheduler: SchedulerSpec
    budget: BudgetSpec
    resources: ResourcesSpec
    storage: str | None
    max_failures: int
    source: str
    # The validated mapping (overrides applied), written to the run directory.
    raw: Mapping[str, Any]
    keep_best_checkpoints: int | None = DEFAULT_KEEP_BEST
    # Space entry name -> where its value goes: ("model", "lr"), ("trainer", "gradient_clip_val"),
    # ("model", "encoder", "init_args", "width").
    targets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The spec's folder: relative paths and the user's modules are found from there.
    base_dir: str = "."
    # Every objective in order (the first is `metric`/`mode`); bounds on logged values; how
    # `export` picks best.yaml on a Pareto front (see search/spec/objectives.py).
    objectives: tuple[Objective, ...] = ()
    constraints: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    select: Selection = field(default_factory=Selection)

    @property
    def several_objectives(self) -> bool:
        return len(self.objectives) > 1

    @property
    def multi(self) -> bool:
        """A sweep that reports a vector of objectives, or is constrained: the Optuna study, the
        samplers and the views take the multi-objective path."""
        return self.several_objectives or bool(self.constraints)

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(o.mode for o in self.objectives)

    @property
    def watched(self) -> tuple[str, ...]:
        """Every logged name the sweep reads: the objectives, then the constrained values."""
        names = [o.name for o in self.objectives]
        return (*names, *(n for n in self.constraints if n not in names))

    @property
    def task_label(self) -> str:
        """The task's short name, or the model's class name."""
        return self.task.name if self.task is not None else self.model.class_path.rsplit(".", 1)[-1]

    def training_config(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """One trial's complete config in LightningCLI's terms (``model``, ``data``, ``trainer``):
        the spec's fixed arguments with the space's fixed values and ``sampled`` put in place."""
        return sc.run_config(self.model, self.data, self.trainer, {**self.space.fixed, **sampled},
                             self.targets, self.task)


def parse_spec(path: str | os.PathLike[str], overrides: Mapping[KeyPath, Any] | None = None, *,
               read_inputs: bool = True) -> SweepSpec:
    """Load, override and validate a spec file; raise SpecError listing every problem.
    ``read_inputs``: also run the classes' ``check_inputs`` (read the data files and weights in
    full); the views of a finished run (status, report, export) and a resume's look at the
    stored spec skip it, as they train nothing."""
    from finesweep.search.user_code import add_import_paths

    text = read_text(path)
    base_dir = spec_dir_of(path, text)
    add_import_paths(base_dir)
    data, marks, duplicates = parse_yaml_text(str(path), text)
    if not isinstance(data, dict):
        raise SpecError(str(path), [Problem((), "a mapping of spec keys", describe(data), line=1)])
    for section in ("strategy", "scheduler"):
        if isinstance(data.get(section), str):  # `strategy: global` is short for {name: global}
            data[section] = {"name": data[section]}
    for key_path, value in (overrides or {}).items():
        target = data
        for key in key_path[:-1]:
            if target.get(key) is None:
                target[key] = {}
            target = target[key]
            if not isinstance(target, dict):
                break  # Keep the malformed section as written, so validation reports it.
        else:
            target[key_path[-1]] = value
            marks[key_path] = 0  # Rendered without a line: the value came from the command line.
    checker = SpecChecker(str(path), marks, base_dir)
    checker.read_inputs = read_inputs
    checker.problems.extend(duplicates)
    return checker.spec(data)


class SpecChecker(SpaceRules):
    """Checks a loaded spec section by section, collecting every problem, and builds the
    :class:`SweepSpec`; :meth:`spec` raises :class:`SpecError` when any problem was found."""

    def spec(self, data: dict[str, Any]) -> SweepSpec:
        data = self.mapping(data, (), TOP_LEVEL_KEYS)
        for required in ("name", "space") if "objectives" in data else ("name", "metric", "space"):
            if required not in data:
                self.problem((required,), f"a `{required}:` entry", "none")
        if "task" not in data and "model" not in data:
            self.problem(("model",), "a `model:` entry ({class_path, init_args}) or a built-in `task:`", "none",
                         "built-in tasks: " + ", ".join(sorted(TASKS)))
        name = data.get("name")
        if "name" in data and (not isinstance(name, str) or not NAME_PATTERN.fullmatch(name)):
            self.problem(("name",), "a name of letters, digits, '_', '-', '.'", describe(name),
                         "it names the run directory runs/<name>")
        elif isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
            self.problem(("name",), f"a name of at most {MAX_NAME_LENGTH} characters",
                         f"{len(name)} characters", "it names the run directory runs/<name>")
        if data.get("description") is not None and not isinstance(data["description"], str):
            self.problem(("description",), "a string", describe(data["description"]))
        task = None
        if "task" in data and self.string(data["task"], ("task",), sorted(TASKS)):
            task = TASKS[data["task"]]
            if "model" in data:
                self.problem(("model",), "either `task:` or `model:`", "both",
                             "`task:` names a built-in model and its data; drop it to sweep your own model")
                task = None  # The rest is checked as the spec of the model named, once.
        # A `task:` that names no task is reported alone, not again as missing model and data.
        named_task = "task" in data and "model" not in data
        self.deferred = deferred_arguments(data.get("space"))
        model, model_cls = self.component("model", task.model if task else None, data.get("model"), named_task)
        data_section, data_cls = self.component("data", task.data if task else None, data.get("data"), named_task)
        trainer = self.trainer(data.get("trainer"))
        self.reserved_callbacks(trainer.get("callbacks"))
        objectives = check_objectives(self, model, data)
        if objectives:
            metric, mode = objectives[0].name, objectives[0].mode
        elif "objectives" not in data:
            metric, mode = self.metric(model, data.get("metric"), data.get("mode"), "metric" in data)
            objectives = (Objective(metric, mode),)
        else:
            metric, mode = "", "max"
        constraints = check_bounds(self, data.get("constraints"), ("constraints",))
        select = check_select(self, data.get("select"), objectives)
        space, targets = self.space(task, model_cls, data_cls, model, data_section, data.get("space"),
                                    "space" in data)
        self.required_arguments(model, model_cls, data_section, data_cls, targets, task)
        if data_cls is not None and not self.problems:
            self.inputs_load(task, model, data_section, space, targets)
        strategy = self.strategy(data.get("strategy"), space)
        scheduler = self.scheduler(data.get("scheduler"))
        check_strategy_and_scheduler(self, strategy.name, scheduler.name, len(objectives) > 1, bool(constraints),
                                     anchored=strategy.options.get("start_from") is not None)
        budget = self.record(BudgetSpec, data.get("budget"), ("budget",))
        resources = self.record(ResourcesSpec, data.get("resources"), ("resources",))
        storage = self.storage(data.get("storage"))
        if storage is not None:
            data["storage"] = storage  # Absolute from here on, in the run's spec.yaml too.
        max_failures = 0
        if data.get("max_failures") is not None:
            max_failures = self.number(data["max_failures"], ("max_failures",), integer=True, low=0) or 0
        keep_best = self.checkpoints(data.get("checkpoints"))
        if self.problems:
            raise SpecError(self.source, self.problems)
        for key_path, value in self.resolved_paths.items():
            spec_classes.set_in(data, key_path, value)
        return SweepSpec(
            name=name, task=task, model=model, data=data_section, trainer=trainer, metric=metric, mode=mode,
            space=space, strategy=strategy, scheduler=scheduler, budget=budget, resources=resources,
            storage=storage, max_failures=int(max_failures), source=self.source, raw=data,
            keep_best_checkpoints=keep_best, targets=targets, base_dir=str(self.base_dir),
            objectives=objectives, constraints=constraints, select=select,
        )

    def reserved_callbacks(self, callbacks: Any) -> None:
        """A ``trainer.callbacks`` entry that would do finesweep's own job (checkpointing, a
        progress bar) is a problem at its class path, not a clash inside every trial."""
        from finesweep.models.run import reserved_callback

        listed = isinstance(callbacks, list)
        for index, item in enumerate(callbacks if listed else [callbacks]):
            class_path = item.get("class_path") if isinstance(item, dict) else None
            cls = spec_classes.callback_class(class_path) if isinstance(class_path, str) else None
            clash = reserved_callback(cls) if cls is not None else None
            if clash is not None:
                at = ("trainer", "callbacks", *((index,) if listed else ()), "class_path")
                self.problem(at, "a callback that leaves checkpoints and progress to finesweep",
                             f"{class_path}, {clash}")

    def checkpoints(self, value: Any) -> int | None:
        entry = self.mapping(value, ("checkpoints",), ["keep_best"])
        if "keep_best" not in entry:
            return DEFAULT_KEEP_BEST
        if entry["keep_best"] is None:
            return None
        return self.number(entry["keep_best"], ("checkpoints", "keep_best"), integer=True, low=1)

    def strategy(self, value: Any, space: SearchSpace) -> StrategySpec:
        from finesweep.search.strategies import STRATEGIES, check_options

        if isinstance(value, str):
            value = {"name": value}
        if isinstance(value, dict):
            value = self.misplaced_options(value, ("strategy",), ["name", "options", "seed"],
                                           {n: list(s.options) for n, s in STRATEGIES.items()})
        entry = self.mapping(value, ("strategy",), ["name", "options", "seed"])
        name = entry.get("name", "global")
        if self.string(name, ("strategy", "name"), sorted(STRATEGIES)) is None:
            return StrategySpec()
        options = self.mapping(entry.get("options"), ("strategy", "options"),
                               list(STRATEGIES[name].options))
        if isinstance(options.get("start_from"), str):
            # A file is read here, once: the sampler receives the point, never a path.
            point = self.start_point(options["start_from"])
            if point is None:
                return StrategySpec(name=name)
            options = {**options, "start_from": point}
        for key, expected, found in check_options(name, options, space):
            self.problem(("strategy", "options", key) if key else ("strategy", "name"), expected, found)
        seed = entry.get("seed")
        if seed is not None:
            seed = self.number(seed, ("strategy", "seed"), integer=True, low=0, high=MAX_SEED)
        return StrategySpec(name=name, options=options, seed=seed)

    def misplaced_options(self, entry: dict[str, Any], path: KeyPath, keys: list[str],
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
            self.problem((*path, key), f"one of the keys {', '.join(keys)}", f"{key!r} beside `name:`",
                         f"{key} is an option of {name}: write it under `options:` ({path[0]}: "
                         f"{{name: {name}, options: {{{key}: ...}}}})")
        return kept

    def start_point(self, value: str) -> dict[str, Any] | None:
        """The searched values of an exported trial (best.yaml's ``#% params``), the file's path
        taken relative to the spec's folder; None (and a problem) when it has none."""
        path = Path(resolve_relative(value, self.base_dir))
        at = ("strategy", "options", "start_from")
        try:
            params = read_record(path).get("params")
        except SpecError as error:
            self.problem(at, "a readable best.yaml", "; ".join(p.found for p in error.problems))
            return None
        if not isinstance(params, dict):
            self.problem(at, "a best.yaml with finesweep's record of the trial's params (launch.py export "
                         "writes one)", f"{value!r} without one")
            return None
        return params

    def scheduler(self, value: Any) -> SchedulerSpec:
        from finesweep.search.schedulers import SCHEDULERS

        if isinstance(value, str):
            value = {"name": value}
        if isinstance(value, dict):
            value = self.misplaced_options(value, ("scheduler",), ["name", "options"],
                                           {n: list(o) for n, o in SCHEDULERS.items()})
        entry = self.mapping(value, ("scheduler",), ["name", "options"])
        name = entry.get("name", "asha")
        if self.string(name, ("scheduler", "name"), sorted(SCHEDULERS)) is None:
            return SchedulerSpec()
        known = SCHEDULERS[name]
        options = self.mapping(entry.get("options"), ("scheduler", "options"), list(known))
        for key, option_value in options.items():
            default = known[key]
            # Ray asserts reduction_factor > 1 (HyperBand divides by its logarithm).
            low = 2 if key == "reduction_factor" else 1 if isinstance(default, int) else 0
            self.number(option_value, ("scheduler", "options", key), integer=isinstance(default, int),
                        low=low)
        return SchedulerSpec(name=name, options=options)
