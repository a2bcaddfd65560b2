"""The spec's ``space:`` section: where each entry goes, and its range, choices and conditions.

An entry is a fixed value or a searched parameter (``{type: float | int | categorical, ...}``)
for a model or data argument (bare or ``model.ARG``/``data.ARG``, nested class arguments as
``model.ARG.init_args.NAME``) or a Trainer option (``trainer.OPTION``). Its values are checked
against the argument's type hint and bounds; ``when:`` conditions are checked against the
parameters they name and put in an order that samples a condition before what depends on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from finesweep.models import components
from finesweep.models.tasks import TaskAlias
from finesweep.search import spec_components as sc
from finesweep.search.space import (
    CategoricalParam,
    Condition,
    FloatParam,
    IntParam,
    Param,
    SearchSpace,
)
from finesweep.search.spec_components import Component, ComponentChecks, Target
from finesweep.search.spec_problems import KeyPath, describe, did_you_mean, format_path, is_number, suggest

MAX_CHOICES = 1_000
# A searched entry's `type:`: the parameter it makes and the keys it takes.
PARAM_TYPES: dict[str, tuple[type[Param], tuple[str, ...]]] = {
    "float": (FloatParam, ("type", "low", "high", "log", "step", "when")),
    "int": (IntParam, ("type", "low", "high", "log", "step", "when")),
    "categorical": (CategoricalParam, ("type", "choices", "when")),
}
Targets = dict[str, tuple[str, ...]]


class SpaceRules(ComponentChecks):
    """The ``space:`` checks, and those that need the space: required arguments, loading the data."""

    # Whether inputs_load runs the classes' check_inputs hooks (see spec.parse_spec).
    read_inputs = True

    def space(self, task: TaskAlias | None, model_cls: type | None, data_cls: type | None, model: Component,
              data_section: Component, value: Any, given: bool) -> tuple[SearchSpace, Targets]:
        if value is None and not given:
            return SearchSpace(params=()), {}  # Reported as a missing `space:` entry.
        if not isinstance(value, dict) or not value:
            self.problem(("space",), "a non-empty mapping of parameter names", describe(value))
            return SearchSpace(params=()), {}
        classes = {"model": model_cls, "data": data_cls}
        fixed_components = {"model": model, "data": data_section}
        params: list[Param] = []
        fixed: dict[str, Any] = {}
        targets: Targets = {}
        # Parameters declared but rejected: conditions on them are not reported a second time.
        rejected: set[str] = set()
        for name, entry in value.items():
            path = ("space", name)
            target = self.target(name, task, classes, fixed_components, path)
            if target is None and (model_cls is not None or data_cls is not None):
                rejected.add(str(name))
                continue
            if target is not None:
                targets[str(name)] = (target.section, target.argument, *target.nested)
            if isinstance(entry, dict) and "type" not in entry:
                if set(entry) == {"value"}:
                    entry = entry["value"]
                    path = (*path, "value")
                    if isinstance(entry, (dict, list)):
                        self.problem(path, "a plain value", describe(entry))
                        rejected.add(name)
                        continue
                else:
                    self.problem(path, "a fixed value or a mapping with `type:` (float, int, categorical)",
                                 describe(entry), "add `type: float` (or int / categorical)")
                    rejected.add(name)
                    continue
            if isinstance(entry, dict):
                param = self.param(name, entry, target, path)
                if param is not None:
                    params.append(param)
                else:
                    rejected.add(name)
            elif isinstance(entry, list):
                self.problem(path, "a fixed value or a mapping with `type:`", describe(entry),
                             "to search a list, write {type: categorical, choices: [...]}")
            elif target is None or self.argument_value(target, entry, path):
                fixed[name] = self.resolve_path(target, entry, path) if target is not None else entry
        ordered = self.order_by_conditions(params, rejected=rejected, fixed=fixed)
        return SearchSpace(params=tuple(ordered), fixed=fixed), targets

    def target(self, key: str, task: TaskAlias | None, classes: Mapping[str, type | None],
               fixed: Mapping[str, Component], path: KeyPath) -> Target | None:
        """Where the space entry ``key`` goes; None (and a problem) when nowhere."""
        from finesweep.models.run import RESERVED_TRAINER_OPTIONS

        parts = sc.split_target(str(key))
        if len(parts) == 1:
            # A bare name: the model's argument, else the data's (how built-in task specs name them).
            for section in ("model", "data"):
                cls = classes[section]
                if cls is not None and parts[0] in components.class_arguments(cls):
                    return Target(cls, parts[0], (), section, fixed[section].init_args.get(parts[0]))
            if all(classes[s] is None for s in ("model", "data")):
                return None
            names = [*sc.argument_names(classes["model"]), *sc.argument_names(classes["data"])]
            owner = f"task {task.name!r}" if task is not None else "the model or its data"
            self.problem(path, f"a setting of {owner}", f"unknown parameter {key!r}",
                         suggest(key, names) if task is not None else did_you_mean(key, names)
                         or "name it model.ARG, data.ARG or trainer.OPTION")
            return None
        section, argument, *nested = parts
        if section not in sc.SECTIONS:
            self.problem(path, "model.ARG, data.ARG or trainer.OPTION", f"{key!r}",
                         did_you_mean(section, sc.SECTIONS))
            return None
        cls = sc.trainer_class() if section == "trainer" else classes[section]
        if cls is None:
            return None
        if section == "trainer" and argument in RESERVED_TRAINER_OPTIONS:
            self.problem(path, "a Trainer option finesweep does not set itself", repr(argument),
                         RESERVED_TRAINER_OPTIONS[argument])
            return None
        names = sc.argument_names(cls)
        if argument not in names:
            self.problem(path, f"an argument of {cls.__name__}", f"unknown parameter {argument!r}",
                         suggest(argument, names))
            return None
        if nested and nested[0] != "init_args":
            self.problem(path, f"{section}.{argument}.init_args.NAME (an argument of the class it names)",
                         repr(key))
            return None
        whole = fixed[section].init_args.get(argument) if section != "trainer" else None
        return Target(cls, argument, tuple(nested), section, whole)

    def param(self, name: str, entry: dict[str, Any], target: Target | None, path: KeyPath) -> Param | None:
        type_name = self.string(entry["type"], (*path, "type"), list(PARAM_TYPES))
        if type_name is None:
            return None
        kind, keys = PARAM_TYPES[type_name]
        entry = self.mapping(entry, path, keys)
        takes = target.kind if target is not None else None
        limits = target.limits if target is not None else None
        when = self.conditions(entry.get("when"), (*path, "when"))
        if kind is CategoricalParam:
            return self.categorical(name, entry, target, path, when)
        if takes is str or takes is bool:
            self.problem((*path, "type"), "categorical (this setting takes names)", repr(type_name))
            return None
        integer = kind is IntParam
        # An int range for a float setting is fine (e.g. whole-number epochs of warm-up).
        if not integer and takes is int:
            self.problem((*path, "type"), "int (this setting takes whole numbers)", repr(type_name))
            return None
        bounds = {}
        for key in ("low", "high"):
            if key not in entry:
                self.problem((*path, key), f"a `{key}:` bound", "none")
            else:
                bounds[key] = self.number(entry[key], (*path, key), integer=integer,
                                          low=limits.low if limits else None,
                                          high=limits.high if limits else None)
        log = self.boolean(entry["log"], (*path, "log")) if "log" in entry else False
        step = None
        if entry.get("step") is not None:
            step = self.number(entry["step"], (*path, "step"), integer=integer, low=0, low_open=True)
            if step is None:
                return None
            if log and not integer:
                self.problem((*path, "step"), "no step on a log-scale float", repr(step),
                             "Optuna samples log floats continuously; drop `step` or `log`")
                return None
            if log and integer and step != 1:
                self.problem((*path, "step"), "step 1 on a log-scale int", repr(step))
                return None
        low, high = bounds.get("low"), bounds.get("high")
        if low is None or high is None:
            return None
        if low > high:
            self.problem(path, "low <= high", f"low={low!r}, high={high!r}", "swap the bounds")
            return None
        if log and low <= 0:
            self.problem((*path, "low"), "low > 0 on a log scale", repr(low),
                         "a log-scale range cannot include zero or negatives")
            return None
        if integer:
            return IntParam(name, int(low), int(high), log=log, step=int(step or 1), when=when)
        return FloatParam(name, float(low), float(high), log=log, step=step, when=when)

    def categorical(self, name: str, entry: dict[str, Any], target: Target | None, path: KeyPath,
                    when: tuple[Condition, ...]) -> CategoricalParam | None:
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            self.problem((*path, "choices"), "a non-empty list of choices", describe(choices))
            return None
        if len(choices) > MAX_CHOICES:
            self.problem((*path, "choices"), f"at most {MAX_CHOICES} choices", f"{len(choices)}",
                         "use an int or float range for a numeric setting")
            return None
        ok = True
        for index, choice in enumerate(choices):
            if isinstance(choice, (dict, list)):
                self.problem((*path, "choices", index), "a plain value", describe(choice))
                ok = False
            elif target is not None and not self.argument_value(target, choice,
                                                                 (*path, "choices", index)):
                ok = False
        if ok:
            # Equal, not identical: Optuna finds a choice by ==, so 1 and 1.0 (or 1 and true) collide.
            seen: list[Any] = []
            repeated: list[Any] = []
            for choice in choices:
                (repeated if choice in seen else seen).append(choice)
            if repeated:
                self.problem((*path, "choices"), "distinct choices",
                             f"{', '.join(map(repr, repeated))} again", "remove the repeated ones")
                ok = False
        return CategoricalParam(name, tuple(choices), when=when) if ok else None

    def conditions(self, value: Any, path: KeyPath) -> tuple[Condition, ...]:
        if value is None:
            return ()
        if not isinstance(value, dict) or not value:
            self.problem(path, "a mapping {parameter: value or [values]}", describe(value))
            return ()
        result = []
        for parameter, expected in value.items():
            values = tuple(expected) if isinstance(expected, list) else (expected,)
            if not values:
                self.problem((*path, parameter), "at least one value", "[]",
                             "with no values the condition never holds and the parameter is never searched")
                continue
            result.append(Condition(str(parameter), values))
        return tuple(result)

    def order_by_conditions(self, params: list[Param], *, rejected: Set[str] = frozenset(),
                            fixed: Mapping[str, Any] | None = None) -> list[Param]:
        """Sampling order: a condition's parameter before the parameters that depend on it.
        ``rejected`` names parameters whose own problems are already reported."""
        by_name = {p.name: p for p in params}
        for param in params:
            for condition in param.when:
                path = ("space", param.name, "when", condition.parameter)
                other = by_name.get(condition.parameter)
                if condition.parameter == param.name:
                    self.problem(path, "another parameter", "a condition on itself")
                elif condition.parameter in rejected:
                    pass  # Its own definition is wrong and already reported.
                elif other is None and condition.parameter in (fixed or {}):
                    self.problem(path, "a searched parameter of this space",
                                 f"{condition.parameter!r}, which is fixed to "
                                 f"{describe(fixed[condition.parameter])}",
                                 "a condition on a fixed value always or never holds")
                elif other is None:
                    self.problem(path, "a searched parameter of this space",
                                 f"{condition.parameter!r}, which is not searched here",
                                 suggest(condition.parameter, list(by_name)))
                elif isinstance(other, FloatParam):
                    self.problem(path, "a condition on a categorical or int parameter",
                                 f"a condition on the float {other.name!r}",
                                 "a sampled float almost never equals a given value")
                else:
                    for expected in condition.values:
                        if not _can_take(other, expected):
                            self.problem(path, f"a value {other.name} can take: {_describe_values(other)}",
                                         repr(expected))
        ordered: list[Param] = []
        placed: set[str] = set()
        pending = list(params)

        def waits_for(param: Param) -> list[str]:
            return [c.parameter for c in param.when
                    if c.parameter in by_name and c.parameter != param.name and c.parameter not in placed]

        while pending:
            ready = [p for p in pending if not waits_for(p)]
            if not ready:
                # Every pending parameter waits for another pending one: following those links
                # from any of them must come back round; report that loop, then carry on.
                chain = [pending[0].name]
                while (step := waits_for(by_name[chain[-1]])[0]) not in chain:
                    chain.append(step)
                cycle = [*chain[chain.index(step):], step]
                self.problem(("space", cycle[0], "when", cycle[1]), "conditions without cycles",
                             f"a cycle {' -> '.join(cycle)}", "one of them must not depend on the others")
                ready = [by_name[name] for name in cycle[:-1]]
            for param in ready:
                ordered.append(param)
                placed.add(param.name)
                pending.remove(param)
        return ordered

    def required_arguments(self, model: Component, model_cls: type | None, data_section: Component,
                           data_cls: type | None, targets: Targets, task: TaskAlias | None) -> None:
        """A required ``__init__`` argument neither fixed nor searched nor linked is a problem now,
        not a TypeError in every trial."""
        for section, component, cls in (("model", model, model_cls), ("data", data_section, data_cls)):
            if cls is None:
                continue
            given = {*component.init_args, *(t[1] for t in targets.values() if t[0] == section)}
            if task is not None and section == "model":
                given |= set(task.links.values())
            for argument in sc.required_missing(cls, sorted(given)):
                where = (section,) if task is not None else (section, "init_args")
                self.problem((*where, argument), f"a value for {cls.__name__}'s required argument {argument!r}",
                             "none", f"fix it under {format_path(where)} or search it as {section}.{argument}")

    def inputs_load(self, task: TaskAlias | None, model: Component, data_section: Component,
                    space: SearchSpace, targets: Targets) -> None:
        """Build the DataModule once (and the module, when it has ``check_inputs``) with the
        fixed values and each searched one's first probe: a missing or unreadable data file or
        ``init_from`` checkpoint is reported now, before any worker starts."""
        probe = {p.name: sc.probe_values(p)[0] for p in space.params}
        config = sc.run_config(model, data_section, {}, {**space.fixed, **probe}, targets, task)
        for section, reason in sc.input_problems(data_section, config["data"]["init_args"], model,
                                                 config["model"]["init_args"], hooks=self.read_inputs):
            expected = ("data the DataModule can load" if section == "data"
                        else "inputs the model can load (its check_inputs)")
            self.problem((section,), expected, reason)


def _can_take(param: IntParam | CategoricalParam, value: Any) -> bool:
    if isinstance(param, CategoricalParam):
        return value in param.choices
    # Arithmetic, not a list of the grid: an int range can span billions of values.
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return (is_number(value) and whole and param.low <= value <= param.high
            and (int(value) - param.low) % param.step == 0)


def _describe_values(param: IntParam | CategoricalParam) -> str:
    if isinstance(param, CategoricalParam):
        return ", ".join(map(repr, param.choices[:10])) + (", ..." if len(param.choices) > 10 else "")
    step = f" in steps of {param.step}" if param.step != 1 else ""
    return f"an integer from {param.low} to {param.high}{step}"
