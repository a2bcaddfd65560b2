"""The ``when:`` conditions of a space: read, checked against the parameters they name, and
put in an order that samples a condition's parameter before what depends on it."""

from __future__ import annotations

import graphlib
import itertools
from collections.abc import Mapping, Set
from typing import Any

from finesweep.search.space import CategoricalParam, Condition, FloatParam, IntParam, Param
from finesweep.search.spec.problems import KeyPath, describe, is_number, suggest


def conditions(checks: Any, value: Any, path: KeyPath) -> tuple[Condition, ...]:
    """A parameter's ``when:`` as conditions; problems go to ``checks``."""
    if value is None:
        return ()
    if not isinstance(value, dict) or not value:
        checks.problem(path, "a mapping {parameter: value or [values]}", describe(value))
        return ()
    result = []
    for parameter, expected in value.items():
        values = tuple(expected) if isinstance(expected, list) else (expected,)
        if not values:
            checks.problem((*path, parameter), "at least one value", "[]",
                             "with no values the condition never holds and the parameter is never searched")
            continue
        result.append(Condition(str(parameter), values))
    return tuple(result)


def order_by_conditions(checks: Any, params: list[Param], *, rejected: Set[str] = frozenset(),
                        fixed: Mapping[str, Any] | None = None) -> list[Param]:
    """Sampling order: a condition's parameter before the parameters that depend on it.
    ``rejected`` names parameters whose own problems are already reported."""
    by_name = {p.name: p for p in params}
    for param in params:
        for condition in param.when:
            path = ("space", param.name, "when", condition.parameter)
            other = by_name.get(condition.parameter)
            if condition.parameter == param.name:
                checks.problem(path, "another parameter", "a condition on itself")
            elif condition.parameter in rejected:
                pass  # Its own definition is wrong and already reported.
            elif other is None and condition.parameter in (fixed or {}):
                checks.problem(path, "a searched parameter of this space",
                               f"{condition.parameter!r}, which is fixed to "
                               f"{describe(fixed[condition.parameter])}",
                               "a condition on a fixed value always or never holds")
            elif other is None:
                checks.problem(path, "a searched parameter of this space",
                               f"{condition.parameter!r}, which is not searched here",
                               suggest(condition.parameter, list(by_name)))
            elif isinstance(other, FloatParam):
                checks.problem(path, "a condition on a categorical or int parameter",
                               f"a condition on the float {other.name!r}",
                               "a sampled float almost never equals a given value")
            else:
                for expected in condition.values:
                    if not _can_take(other, expected):
                        checks.problem(path, f"a value {other.name} can take: {_describe_values(other)}",
                                       repr(expected))
    spec_order = list(by_name)
    waits_for = {p.name: [c.parameter for c in p.when if c.parameter in by_name and c.parameter != p.name]
                 for p in params}
    while True:
        sorter = graphlib.TopologicalSorter(waits_for)
        try:
            sorter.prepare()
            break
        except graphlib.CycleError as error:
            # Reported once, from its first parameter in the spec, following each condition to the
            # parameter it names; without that loop's links the rest is ordered as usual.
            loop = list(reversed(error.args[1][:-1]))  # graphlib lists a parameter before its dependants
            start = min(loop, key=spec_order.index)
            cycle = [*loop[loop.index(start):], *loop[:loop.index(start)], start]
            checks.problem(("space", cycle[0], "when", cycle[1]), "conditions without cycles",
                           f"a cycle {' -> '.join(cycle)}", "one of them must not depend on the others")
            for name, step in itertools.pairwise(cycle):
                waits_for[name] = [n for n in waits_for[name] if n != step]
    # In rounds, each in the spec's order: the sampling order does not depend on graphlib's.
    ordered: list[Param] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=spec_order.index)
        ordered.extend(by_name[name] for name in ready)
        sorter.done(*ready)
    return ordered


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
