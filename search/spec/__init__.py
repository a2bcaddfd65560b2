"""The sweep spec: one YAML file parsed once into typed objects, with every problem reported at once.

Validation collects :class:`~finesweep.search.spec.problems.Problem` objects (file, line, key
path, expected, found, hint) instead of stopping at the first one, and nothing here starts Ray,
so a wrong spec is rejected before any compute or any file is written. The checks live beside
what they check: the YAML loader in
:mod:`~finesweep.search.spec.loading`, single values and storage in
:mod:`~finesweep.search.spec.fields`, the model, data and trainer sections in
:mod:`~finesweep.search.spec.components` (nested classes in :mod:`~finesweep.search.spec.classes`,
path arguments in :mod:`~finesweep.search.spec.paths`), the space in
:mod:`~finesweep.search.spec.space_rules`, the strategy, scheduler, budget and resources in
:mod:`~finesweep.search.spec.sections`. Each section is checked by one plain function given the
:class:`~finesweep.search.spec.fields.FieldChecks` that collects the problems (with the file
and the line of every key); :func:`check_spec` calls them in turn.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from finesweep.models.tasks import TASKS, TaskAlias
from finesweep.search.space import SearchSpace
from finesweep.search.spec import classes as spec_classes
from finesweep.search.spec import components as sc
from finesweep.search.spec.choices import deferred_arguments
from finesweep.search.spec.components import Component, check_component, check_metric, check_trainer, reserved_callbacks
from finesweep.search.spec.fields import FieldChecks
from finesweep.search.spec.loading import parse_yaml_text, read_text, spec_dir_of
from finesweep.search.spec.objectives import (
    Objective,
    Selection,
    check_bounds,
    check_objectives,
    check_select,
    check_strategy_and_scheduler,
)
from finesweep.search.spec.problems import KeyPath, Problem, SpecError, describe
from finesweep.search.spec.sections import (
    DEFAULT_KEEP_BEST,
    MAX_SEED,
    BudgetSpec,
    ResourcesSpec,
    SchedulerSpec,
    StrategySpec,
    check_budget,
    check_checkpoints,
    check_resources,
    check_scheduler,
    check_strategy,
)
from finesweep.search.spec.space_rules import check_space, inputs_load, required_arguments
from finesweep.search.user_code import add_import_paths

# Re-exported: the rest of finesweep takes the spec's types and limits from here.
__all__ = ["DEFAULT_KEEP_BEST", "MAX_SEED", "BudgetSpec", "FieldChecks", "KeyPath", "Problem", "ResourcesSpec",
           "SchedulerSpec", "SpecError", "StrategySpec", "SweepSpec", "check_spec", "parse_spec"]

TOP_LEVEL_KEYS = (
    "name", "description", "task", "model", "data", "trainer", "metric", "mode", "space", "strategy",
    "scheduler", "budget", "resources", "storage", "max_failures", "checkpoints", "objectives", "constraints",
    "select",
)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The name becomes a folder name (runs/<name>) and a study key: well below the 255 bytes
# a file system allows for one name.
MAX_NAME_LENGTH = 100


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
    checks = FieldChecks(str(path), marks, base_dir, read_inputs=read_inputs)
    checks.problems.extend(duplicates)
    return check_spec(checks, data)


def check_spec(checks: FieldChecks, data: dict[str, Any]) -> SweepSpec:
    """The spec's sections checked in turn, each by its own function, every problem going to
    ``checks``; the :class:`SweepSpec`, or :class:`SpecError` listing them all."""
    data = checks.mapping(data, (), TOP_LEVEL_KEYS)
    name, task = check_heading(checks, data)
    # A `task:` that names no task is reported alone, not again as missing model and data.
    named_task = "task" in data and "model" not in data
    deferred = deferred_arguments(data.get("space"))
    model, model_cls, model_written = check_component(checks, "model", task.model if task else None,
                                                      data.get("model"), named_task, deferred)
    data_section, data_cls, data_written = check_component(checks, "data", task.data if task else None,
                                                           data.get("data"), named_task, deferred)
    trainer = check_trainer(checks, data.get("trainer"))
    reserved_callbacks(checks, trainer.get("callbacks"))
    objectives = check_objectives(checks, model, data)
    if objectives:
        metric, mode = objectives[0].name, objectives[0].mode
    elif "objectives" not in data:
        metric, mode = check_metric(checks, model, data.get("metric"), data.get("mode"), "metric" in data)
        objectives = (Objective(metric, mode),)
    else:
        metric, mode = "", "max"
    constraints = check_bounds(checks, data.get("constraints"), ("constraints",))
    select = check_select(checks, data.get("select"), objectives)
    space, targets = check_space(checks, task, model_cls, data_cls, model, data_section, data.get("space"),
                                 "space" in data, deferred)
    required_arguments(checks, model, model_cls, data_section, data_cls, targets, task,
                       written={"model": model_written, "data": data_written}, deferred=deferred)
    if data_cls is not None and not checks.problems:
        inputs_load(checks, task, model, data_section, space, targets)
    strategy = check_strategy(checks, data.get("strategy"), space)
    scheduler = check_scheduler(checks, data.get("scheduler"))
    check_strategy_and_scheduler(checks, strategy.name, scheduler.name, len(objectives) > 1, bool(constraints),
                                 anchored=strategy.options.get("start_from") is not None)
    budget = check_budget(checks, data.get("budget"))
    resources = check_resources(checks, data.get("resources"))
    storage = checks.storage(data.get("storage"))
    if storage is not None:
        data["storage"] = storage  # Absolute from here on, in the run's spec.yaml too.
    max_failures = 0
    if data.get("max_failures") is not None:
        max_failures = checks.number(data["max_failures"], ("max_failures",), integer=True, low=0) or 0
    keep_best = check_checkpoints(checks, data.get("checkpoints"))
    if checks.problems:
        raise SpecError(checks.source, checks.problems)
    for key_path, value in checks.resolved_paths.items():
        spec_classes.set_in(data, key_path, value)
    return SweepSpec(
        name=name, task=task, model=model, data=data_section, trainer=trainer, metric=metric, mode=mode,
        space=space, strategy=strategy, scheduler=scheduler, budget=budget, resources=resources,
        storage=storage, max_failures=int(max_failures), source=checks.source, raw=data,
        keep_best_checkpoints=keep_best, targets=targets, base_dir=str(checks.base_dir),
        objectives=objectives, constraints=constraints, select=select,
    )


def check_heading(checks: FieldChecks, data: Mapping[str, Any]) -> tuple[Any, TaskAlias | None]:
    """The keys every spec needs, ``name:``, ``description:`` and a built-in ``task:``."""
    for required in ("name", "space") if "objectives" in data else ("name", "metric", "space"):
        if required not in data:
            checks.problem((required,), f"a `{required}:` entry", "none")
    if "task" not in data and "model" not in data:
        checks.problem(("model",), "a `model:` entry ({class_path, init_args}) or a built-in `task:`", "none",
                       "built-in tasks: " + ", ".join(sorted(TASKS)))
    name = data.get("name")
    if "name" in data and (not isinstance(name, str) or not NAME_PATTERN.fullmatch(name)):
        checks.problem(("name",), "a name of letters, digits, '_', '-', '.'", describe(name),
                       "it names the run directory runs/<name>")
    elif isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
        checks.problem(("name",), f"a name of at most {MAX_NAME_LENGTH} characters",
                       f"{len(name)} characters", "it names the run directory runs/<name>")
    if data.get("description") is not None and not isinstance(data["description"], str):
        checks.problem(("description",), "a string", describe(data["description"]))
    task = None
    if "task" in data and checks.string(data["task"], ("task",), sorted(TASKS)):
        task = TASKS[data["task"]]
        if "model" in data:
            checks.problem(("model",), "either `task:` or `model:`", "both",
                           "`task:` names a built-in model and its data; drop it to sweep your own model")
            task = None  # The rest is checked as the spec of the model named, once.
    return name, task
