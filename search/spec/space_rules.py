"""The spec's ``space:`` section: where each entry goes, and its range, choices and conditions.

An entry is a fixed value or a searched parameter (``{type: float | int | categorical, ...}``)
for a model or data argument (bare or ``model.ARG``/``data.ARG``, nested class arguments as
``model.ARG.init_args.NAME``, the class of one as ``model.ARG.class_path``) or a Trainer option
(``trainer.OPTION``). Its values are checked against the type hint and bounds of each class it
may go to (:mod:`~finesweep.search.spec.classes`); ``when:`` conditions in
:mod:`~finesweep.search.spec.conditions`, class choices in :mod:`~finesweep.search.spec.choices`.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from finesweep.models import components
from finesweep.models.run import RESERVED_TRAINER_OPTIONS
from finesweep.models.tasks import TaskAlias
from finesweep.search.space import (
    CategoricalParam,
    Condition,
    FloatParam,
    IntParam,
    Param,
    SearchSpace,
    is_active,
)
from finesweep.search.spec import classes as spec_classes
from finesweep.search.spec import components as sc
from finesweep.search.spec import paths as spec_paths
from finesweep.search.spec.choices import check_with_searches, class_choices, space_targets
from finesweep.search.spec.classes import Target
from finesweep.search.spec.components import Component
from finesweep.search.spec.conditions import conditions, order_by_conditions
from finesweep.search.spec.fields import FieldChecks
from finesweep.search.spec.problems import KeyPath, describe, did_you_mean, format_path, suggest

MAX_CHOICES = 1_000
# A searched entry's `type:`: the parameter it makes and the keys it takes.
PARAM_TYPES: dict[str, tuple[type[Param], tuple[str, ...]]] = {
    "float": (FloatParam, ("type", "low", "high", "log", "step", "when")),
    "int": (IntParam, ("type", "low", "high", "log", "step", "when")),
    "categorical": (CategoricalParam, ("type", "choices", "when")),
}
Targets = dict[str, tuple[str, ...]]


def check_space(checks: FieldChecks, task: TaskAlias | None, model_cls: type | None, data_cls: type | None,
                model: Component, data_section: Component, value: Any, given: bool,
                deferred: Set[tuple[str, str]] = frozenset()) -> tuple[SearchSpace, Targets]:
    """The ``space:`` section as a :class:`SearchSpace`, and where each entry goes."""
    if value is None and not given:
        return SearchSpace(params=()), {}  # Reported as a missing `space:` entry.
    if not isinstance(value, dict) or not value:
        checks.problem(("space",), "a non-empty mapping of parameter names", describe(value))
        return SearchSpace(params=()), {}
    classes = {"model": model_cls, "data": data_cls}
    fixed_components = {"model": model, "data": data_section}
    choices = class_choices(value)
    params: list[Param] = []
    fixed: dict[str, Any] = {}
    targets: Targets = {}
    # Parameters declared but rejected: conditions on them are not reported a second time.
    rejected: set[str] = set()
    for name, entry in value.items():
        path = ("space", name)
        when = entry.get("when") if isinstance(entry, dict) and isinstance(entry.get("when"), dict) else {}
        found = space_target(checks, name, task, classes, fixed_components, choices, when, path)
        if found is None and (model_cls is not None or data_cls is not None):
            rejected.add(str(name))
            continue
        where: list[Target] = []
        if found is not None:
            where, targets[str(name)] = found
        if isinstance(entry, dict) and "type" not in entry:
            if set(entry) == {"value"}:
                entry = entry["value"]
                path = (*path, "value")
                if isinstance(entry, (dict, list)):
                    checks.problem(path, "a plain value", describe(entry))
                    rejected.add(name)
                    continue
            else:
                checks.problem(path, "a fixed value or a mapping with `type:` (float, int, categorical)",
                               describe(entry), "add `type: float` (or int / categorical)")
                rejected.add(name)
                continue
        if isinstance(entry, dict):
            param = check_param(checks, name, entry, where, path)
            if param is not None:
                params.append(param)
            else:
                rejected.add(name)
        elif isinstance(entry, list):
            checks.problem(path, "a fixed value or a mapping with `type:`", describe(entry),
                           "to search a list, write {type: categorical, choices: [...]}")
            rejected.add(name)
        else:
            entry = resolve_fixed(checks, where, entry, path)
            if all(spec_classes.argument_value(checks, t, entry, path) for t in where):
                fixed[name] = entry
            else:
                rejected.add(name)
    ordered = order_by_conditions(checks, params, rejected=rejected, fixed=fixed)
    check_with_searches(checks, classes, fixed_components, ordered, fixed, targets, rejected, deferred)
    return SearchSpace(params=tuple(ordered), fixed=fixed), targets


def resolve_fixed(checks: FieldChecks, where: list[Target], value: Any, path: KeyPath | None = None) -> Any:
    """A space value, a relative path in a path argument made absolute (and, for a fixed one
    at ``path``, so recorded in the run's copy of the spec)."""
    if len(where) != 1 or where[0].class_slot:
        return value
    resolved, changes = spec_paths.resolve_paths(where[0].cls, where[0].argument, value, checks.base_dir)
    if changes and path is not None:
        checks.resolved_paths[path] = resolved
    return resolved


def space_target(checks: FieldChecks, key: str, task: TaskAlias | None, classes: Mapping[str, type | None],
                 fixed: Mapping[str, Component], choices: spec_classes.ClassChoices, when: Mapping[str, Any],
                 path: KeyPath) -> tuple[list[Target], tuple[str, ...]] | None:
    """Where the space entry ``key`` goes: the arguments it sets (one per class it may go to)
    and its place in a run's config; None (and a problem) when nowhere."""
    parts = sc.split_target(str(key))
    if len(parts) == 1:
        # A bare name: the model's argument, else the data's (how built-in task specs name them).
        for section in ("model", "data"):
            cls = classes[section]
            if cls is not None and parts[0] in components.class_arguments(cls):
                return [Target(cls, parts[0], section)], (section, parts[0])
        if all(classes[s] is None for s in ("model", "data")):
            return None
        names = [*sc.argument_names(classes["model"]), *sc.argument_names(classes["data"])]
        owner = f"task {task.name!r}" if task is not None else "the model or its data"
        checks.problem(path, f"a setting of {owner}", f"unknown parameter {key!r}",
                       suggest(key, names) if task is not None else did_you_mean(key, names)
                       or "name it model.ARG, data.ARG or trainer.OPTION")
        return None
    section, argument = parts[0], parts[1]
    if section not in sc.SECTIONS:
        checks.problem(path, "model.ARG, data.ARG or trainer.OPTION", f"{key!r}",
                       did_you_mean(section, sc.SECTIONS))
        return None
    cls = sc.trainer_class() if section == "trainer" else classes[section]
    if cls is None:
        return None
    if section == "trainer" and argument in RESERVED_TRAINER_OPTIONS:
        checks.problem(path, "a Trainer option finesweep does not set itself", repr(argument),
                       RESERVED_TRAINER_OPTIONS[argument])
        return None
    names = sc.argument_names(cls)
    if argument not in names:
        checks.problem(path, f"an argument of {cls.__name__}", f"unknown parameter {argument!r}",
                       suggest(argument, names))
        return None
    fixed_args = fixed[section].init_args if section != "trainer" else {}
    where = space_targets(checks, str(key), cls, fixed_args, choices, when, path)
    return (where, tuple(parts)) if where is not None else None


def check_param(checks: FieldChecks, name: str, entry: dict[str, Any], where: list[Target],
                path: KeyPath) -> Param | None:
    type_name = checks.string(entry["type"], (*path, "type"), list(PARAM_TYPES))
    if type_name is None:
        return None
    kind, keys = PARAM_TYPES[type_name]
    entry = checks.mapping(entry, path, keys)
    kinds = {t.kind for t in where}
    takes = kinds.pop() if len(kinds) == 1 else None
    limits = _tightest([t.limits for t in where])
    when = conditions(checks, entry.get("when"), (*path, "when"))
    if kind is CategoricalParam:
        return check_categorical(checks, name, entry, where, path, when)
    if takes is str or takes is bool or any(t.class_slot for t in where):
        checks.problem((*path, "type"), "categorical (this setting takes names)", repr(type_name))
        return None
    integer = kind is IntParam
    # An int range for a float setting is fine (e.g. whole-number epochs of warm-up).
    if not integer and takes is int:
        checks.problem((*path, "type"), "int (this setting takes whole numbers)", repr(type_name))
        return None
    bounds = {}
    for key in ("low", "high"):
        if key not in entry:
            checks.problem((*path, key), f"a `{key}:` bound", "none")
        else:
            bounds[key] = checks.number(entry[key], (*path, key), integer=integer,
                                        low=limits.low if limits else None,
                                        high=limits.high if limits else None)
    log = checks.boolean(entry["log"], (*path, "log")) if "log" in entry else False
    step = None
    if entry.get("step") is not None:
        step = checks.number(entry["step"], (*path, "step"), integer=integer, low=0, low_open=True)
        if step is None:
            return None
        if log and not integer:
            checks.problem((*path, "step"), "no step on a log-scale float", repr(step),
                           "Optuna samples log floats continuously; drop `step` or `log`")
            return None
        if log and integer and step != 1:
            checks.problem((*path, "step"), "step 1 on a log-scale int", repr(step))
            return None
    low, high = bounds.get("low"), bounds.get("high")
    if low is None or high is None:
        return None
    if low > high:
        checks.problem(path, "low <= high", f"low={low!r}, high={high!r}", "swap the bounds")
        return None
    if log and low <= 0:
        checks.problem((*path, "low"), "low > 0 on a log scale", repr(low),
                       "a log-scale range cannot include zero or negatives")
        return None
    if takes is None and not all(spec_classes.argument_value(checks, t, end, (*path, key)) for t in where
                                 for key, end in (("low", low), ("high", high))):
        return None  # a setting of another type (a union, a list...): the range's ends checked as values
    if integer:
        return IntParam(name, int(low), int(high), log=log, step=int(step or 1), when=when)
    return FloatParam(name, float(low), float(high), log=log, step=step, when=when)


def check_categorical(checks: FieldChecks, name: str, entry: dict[str, Any], where: list[Target], path: KeyPath,
                      when: tuple[Condition, ...]) -> CategoricalParam | None:
    choices = entry.get("choices")
    if not isinstance(choices, list) or not choices:
        checks.problem((*path, "choices"), "a non-empty list of choices", describe(choices))
        return None
    if len(choices) > MAX_CHOICES:
        checks.problem((*path, "choices"), f"at most {MAX_CHOICES} choices", f"{len(choices)}",
                       "use an int or float range for a numeric setting")
        return None
    ok = True
    for index, choice in enumerate(choices):
        if isinstance(choice, (dict, list)):
            checks.problem((*path, "choices", index), "a plain value", describe(choice))
            ok = False
        elif not all(spec_classes.argument_value(checks, t, resolve_fixed(checks, where, choice),
                                                 (*path, "choices", index)) for t in where):
            ok = False
    if ok:
        # Equal, not identical: Optuna finds a choice by ==, so 1 and 1.0 (or 1 and true) collide.
        seen: list[Any] = []
        repeated: list[Any] = []
        for choice in choices:
            (repeated if choice in seen else seen).append(choice)
        if repeated:
            checks.problem((*path, "choices"), "distinct choices",
                           f"{', '.join(map(repr, repeated))} again", "remove the repeated ones")
            ok = False
    return CategoricalParam(name, tuple(choices), when=when) if ok else None


def required_arguments(checks: FieldChecks, model: Component, model_cls: type | None, data_section: Component,
                       data_cls: type | None, targets: Targets, task: TaskAlias | None, *,
                       written: Mapping[str, Set[str]], deferred: Set[tuple[str, str]]) -> None:
    """A required ``__init__`` argument neither fixed nor searched nor linked is a problem now,
    not a TypeError in every trial. ``written``: the argument names each section's init_args
    wrote, valid or not."""
    for section, component, cls in (("model", model, model_cls), ("data", data_section, data_cls)):
        if cls is None:
            continue
        names = written.get(section, set())
        # Written, meant (a misspelt key), or reached into by the space: reported there if wrong.
        given = {*names, *spec_classes.meant(names, sc.argument_names(cls)), *component.init_args,
                 *(t[1] for t in targets.values() if t[0] == section),
                 *(argument for s, argument in deferred if s == section)}
        if task is not None and section == "model":
            given |= set(task.links.values())
        for argument in components.required_missing(cls, sorted(given)):
            where = (section,) if task is not None else (section, "init_args")
            checks.problem((*where, argument), f"a value for {cls.__name__}'s required argument {argument!r}",
                           "none", f"fix it under {format_path(where)} or search it as {section}.{argument}")


def inputs_load(checks: FieldChecks, task: TaskAlias | None, model: Component, data_section: Component,
                space: SearchSpace, targets: Targets) -> None:
    """Build the DataModule once (and the module, when it has ``check_inputs``) with the
    fixed values and each searched one's first probe: a missing or unreadable data file or
    ``init_from`` checkpoint is reported now, before any worker starts."""
    probe: dict[str, Any] = {}
    for param in space.params:  # in sampling order, so only active parameters are probed
        if is_active(param, probe):
            probe[param.name] = sc.probe_values(param)[0]
    config = sc.run_config(model, data_section, {}, {**space.fixed, **probe}, targets, task)
    for section, reason in sc.input_problems(data_section, config["data"]["init_args"], model,
                                             config["model"]["init_args"], hooks=checks.read_inputs):
        expected = ("data the DataModule can load" if section == "data"
                    else "inputs the model can load (its check_inputs)")
        checks.problem((section,), expected, reason)


def _tightest(ranges: list[components.Range | None]) -> components.Range | None:
    """The bounds every one of ``ranges`` allows."""
    lows = [r.low for r in ranges if r is not None and r.low is not None]
    highs = [r.high for r in ranges if r is not None and r.high is not None]
    if not lows and not highs:
        return None
    return components.Range(max(lows) if lows else None, min(highs) if highs else None)
