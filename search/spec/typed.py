"""Sections declared as types: budget, resources and the scheduler options are dataclasses, a
strategy's options the keyword arguments of its sampler factory. jsonargparse (the parser
LightningCLI uses) checks a value against the field's type hint, bounds included; a refusal is
then said in finesweep's words, from the type rather than from jsonargparse's message.

A bounded number is a jsonargparse restricted type (:func:`number_type`); a rule that is not a
bound is a type of its own registered with jsonargparse, whose refusal carries its wording
(:class:`Refused`); ``Annotated[T, Says(...)]`` replaces the expected text of any refusal.
What jsonargparse would take but a YAML spec should not is refused first: a string for a
number (``"1e-3"`` is a string to PyYAML), a float that is not finite, an integer larger than
Optuna stores exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import math
import operator
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from finesweep.search.spec.fields import MAX_INTEGER
from finesweep.search.spec.problems import (
    NUMBER_LIKE,
    bound_text,
    describe,
    did_you_mean,
    number_text_hint,
)
from jsonargparse import ArgumentParser
from jsonargparse import typing as jtyping

_OPERATORS = {operator.gt: ">", operator.ge: ">=", operator.lt: "<", operator.le: "<="}


class Refusal(NamedTuple):
    """One refused value: where, what was expected and found, a hint; whether it broke a bound
    (a value of the right type out of range) rather than the type."""

    key: str
    expected: str
    found: str
    hint: str = ""
    out_of_range: bool = False


@dataclass(frozen=True)
class Says:
    """``Annotated[T, Says(expected, hint)]``: what a refusal of this field says it expected."""

    expected: str
    hint: str = ""
    # Also for a value of the wrong type, not only for one out of range.
    for_type: bool = False


class Refused(ValueError):
    """Raised by a registered type's constructor: the value breaks a rule that is not a bound."""

    def __init__(self, expected: str, hint: str = "") -> None:
        super().__init__(expected)
        self.expected = expected
        self.hint = hint


@functools.cache
def number_type(kind: type, *, low: float | None = None, high: float | None = None, low_open: bool = False) -> type:
    """``kind`` (int or float) within bounds, as a jsonargparse restricted type."""
    restrictions = [*([(">" if low_open else ">=", low)] if low is not None else []),
                    *([("<=", high)] if high is not None else [])]
    try:
        return jtyping.restricted_number_type(None, kind, restrictions)
    except ValueError as error:  # jsonargparse names the types it defines (PositiveInt, ...) once
        return getattr(jtyping, str(error).rstrip(".").rsplit(" ", 1)[-1])


def rule_type(kind: type, holds: Callable[[Any], bool], expected: str, hint: str = "") -> type:
    """``kind`` whose values also satisfy ``holds``, registered with jsonargparse."""

    class Checked(kind):  # type: ignore[misc, valid-type]
        def __new__(cls, value: Any) -> Any:
            if not holds(value):
                raise Refused(expected, hint)
            return super().__new__(cls, value)

    Checked.__name__ = Checked.__qualname__ = f"{kind.__name__}_{holds.__name__.strip('_')}"
    jtyping.register_type(Checked, serializer=kind, deserializer=Checked)
    return Checked


def options_of(schema: Callable[..., Any]) -> dict[str, Any]:
    """Option name -> default: a dataclass's fields, or a factory's keyword-only arguments
    (``seed`` aside, which a spec gives beside the options)."""
    if dataclasses.is_dataclass(schema):
        return {f.name: f.default for f in dataclasses.fields(schema)}
    return {name: p.default for name, p in inspect.signature(schema).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "seed"}


@functools.cache
def _parser(schema: Callable[..., Any]) -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    if dataclasses.is_dataclass(schema):
        parser.add_class_arguments(schema)
    else:
        skip = {n for n in inspect.signature(schema).parameters if n not in options_of(schema)}
        parser.add_function_arguments(schema, skip=skip)
    return parser


@functools.cache
def _hints(schema: Callable[..., Any]) -> dict[str, Any]:
    """The options' type hints, each evaluated alone: a factory's other annotations may name
    types imported only for type checkers."""
    if dataclasses.is_dataclass(schema):
        return typing.get_type_hints(schema, include_extras=True)
    namespace = vars(sys.modules[schema.__module__])
    parameters = inspect.signature(schema).parameters
    return {name: eval(hint, namespace) if isinstance(hint := parameters[name].annotation, str) else hint
            for name in options_of(schema)}


def refusals(schema: Callable[..., Any], given: Mapping[str, Any], *, found: Callable[[Any], str] = describe,
             whole_floats: bool = True) -> tuple[dict[str, Any], list[Refusal]]:
    """``given`` checked against ``schema``'s type hints: the accepted values (an integer given
    as 2.0 made 2, unless not ``whole_floats``) and a refusal for each other, in the order
    given. Keys that are not options are the caller's."""
    accepted, refused = {}, []
    for key, value in given.items():
        reason = _refusal(schema, key, value, found, whole_floats)
        if reason is None:
            accepted[key] = int(value) if _kind(_hints(schema)[key])[0] is int and value is not None else value
        else:
            refused.append(Refusal(key, *reason))
    return accepted, refused


def _refusal(schema: Callable[..., Any], key: str, value: Any, found: Callable[[Any], str],
             whole_floats: bool) -> tuple[str, str, str] | tuple[str, str, str, bool] | None:
    annotation = _hints(schema)[key]
    kind, says, choices = _kind(annotation)
    # What a value of the wrong type is told: the field's own words where it asks, else its type.
    typed = (says.expected, says.hint) if says is not None and says.for_type else (_expected(kind, choices), "")
    if value is None:  # jsonargparse takes null for "not given"; a spec's null is a value
        return None if _admits_none(annotation) else (typed[0], found(value), typed[1])
    if kind is bool and not isinstance(value, bool):  # jsonargparse reads "yes" and 1 as true
        return typed[0], found(value), typed[1]
    if kind in (int, float) and not isinstance(value, bool):
        if isinstance(value, str):
            hint = number_text_hint(value) if NUMBER_LIKE.match(value.strip()) else typed[1]
            return typed[0], found(value), hint
        if isinstance(value, float) and not math.isfinite(value):
            return typed[0], found(value), typed[1]
        if kind is int and isinstance(value, float) and not whole_floats:
            return typed[0], found(value), typed[1]
        if kind is int and isinstance(value, int) and abs(value) > MAX_INTEGER:
            return ("an integer of at most 2**53 in size", found(value),
                    "Optuna stores numbers as floats, which lose larger integers")
    try:
        # A copy: jsonargparse may turn the dicts it parses into Namespaces in place.
        _parser(schema).parse_object({key: copy.deepcopy(value)}, defaults=False)
        return None
    except Exception as error:  # jsonargparse's ArgumentError, wrapping a type's own Refused
        refused = _cause(error)
    if refused is not None:
        return refused.expected, found(value), refused.hint
    if choices:
        return typed[0], found(value), did_you_mean(str(value), choices)
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and (kind is float or whole):
        for check, bound in getattr(_number_part(annotation), "_restrictions", []):
            if not check(value, bound):
                if says is not None:
                    return says.expected, repr(value), says.hint, True
                return f"{_expected(kind, ())} {_OPERATORS[check]} {bound_text(bound)}", repr(value), "", True
    return typed[0], found(value), typed[1]


def _cause(error: BaseException | None) -> Refused | None:
    while error is not None:
        if isinstance(error, Refused):
            return error
        error = error.__cause__ or error.__context__
    return None


def _admits_none(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        return _admits_none(typing.get_args(annotation)[0])
    return annotation is None or annotation is type(None) or (
        typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation))


def _number_part(annotation: Any) -> Any:
    """The non-None member of ``annotation`` (``Annotated`` and ``| None`` stripped)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _number_part(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _number_part(members[0]) if len(members) == 1 else annotation
    return annotation


def _kind(annotation: Any) -> tuple[type | None, Says | None, tuple[str, ...]]:
    """(int, float, bool or str: the plain type under the hint; its :class:`Says`; a Literal's choices)."""
    says = None
    if typing.get_origin(annotation) is typing.Annotated:
        says = next((a for a in typing.get_args(annotation)[1:] if isinstance(a, Says)), None)
    part = _number_part(annotation)
    if typing.get_origin(part) is typing.Literal:
        return str, says, tuple(typing.get_args(part))
    for kind in (bool, int, float):
        if isinstance(part, type) and issubclass(part, kind):
            return kind, says, ()
    return None, says, ()


def _expected(kind: type | None, choices: tuple[str, ...]) -> str:
    if choices:
        return "one of " + ", ".join(choices)
    return {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "a value of its type")
