"""Classes named by class path, as LightningCLI names them: import, check, instantiate.

A run is described the way Lightning users already write it: ``{class_path, init_args}`` for
the model and the data, plus Trainer options. Checking and instantiating go through
jsonargparse, the library LightningCLI itself uses, so an argument accepted here is accepted by
``LightningCLI`` too, nested ``class_path`` arguments included. Nothing here imports torch or
Lightning at module level: a spec is checked before any of that is loaded where it can be.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric argument, carried in its type hint: ``Annotated[float, Range(0, 1)]``.

    jsonargparse (and so LightningCLI) checks the base type; finesweep also checks the bounds
    and names them in its messages and in the starting specs of ``launch.py init``."""

    low: float | None = None
    high: float | None = None


class ComponentError(ValueError):
    """A class path that cannot be imported or is not the kind of class expected."""


@dataclass(frozen=True)
class Argument:
    name: str
    annotation: Any
    default: Any
    required: bool
    help: str | None = None


def import_class(class_path: str) -> type:
    """The class at ``package.module.Class`` (or ``package.module:Class``); a clear error otherwise."""
    module_name, _, attribute = class_path.replace(":", ".").rpartition(".")
    if not module_name or not attribute:
        raise ComponentError(f"{class_path!r} is not a class path: write package.module.ClassName")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        searched = ", ".join(p or "." for p in sys.path[:6]) + (", ..." if len(sys.path) > 6 else "")
        raise ComponentError(f"cannot import module {module_name!r} ({error}); searched: {searched}") from None
    except Exception as error:  # The user's module raised while importing: say which and why.
        raise ComponentError(f"importing module {module_name!r} failed: {type(error).__name__}: {error}") from None
    found = getattr(module, attribute, None)
    if not inspect.isclass(found):
        names = [n for n, v in vars(module).items() if inspect.isclass(v) and not n.startswith("_")]
        raise ComponentError(f"module {module_name!r} has no class {attribute!r}"
                             + (f" (classes there: {', '.join(sorted(names)[:12])})" if names else ""))
    return found


@functools.lru_cache(maxsize=64)
def _parser(cls: type) -> Any:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, fail_untyped=False, sub_configs=True)
    return parser


@functools.lru_cache(maxsize=64)
def class_arguments(cls: type) -> dict[str, Argument]:
    """The ``__init__`` arguments of ``cls`` as jsonargparse resolves them (``**kwargs`` passed on
    to a parent class included), with their docstring help where there is one."""
    from jsonargparse._parameter_resolvers import get_signature_parameters

    arguments = {}
    for parameter in get_signature_parameters(cls, "__init__"):
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        required = parameter.default is inspect.Parameter.empty
        arguments[parameter.name] = Argument(parameter.name, _with_extras(parameter), None if required
                                             else parameter.default, required, getattr(parameter, "doc", None))
    return arguments


def _with_extras(parameter: Any) -> Any:
    """The parameter's hint with its ``Annotated`` metadata: jsonargparse resolves string hints
    (``from __future__ import annotations``) without it, which would drop a :class:`Range`."""
    component = getattr(parameter, "component", None)
    if component is not None:
        try:
            hints = typing.get_type_hints(component, include_extras=True)
        except Exception:  # Unresolvable forward references: keep jsonargparse's reading.
            hints = {}
        if parameter.name in hints:
            return hints[parameter.name]
    return parameter.annotation


def bounds(annotation: Any) -> Range | None:
    """The :class:`Range` in an ``Annotated`` hint (also inside ``Optional``), or None."""
    if typing.get_origin(annotation) is typing.Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, Range)), None)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next((b for a in typing.get_args(annotation) if (b := bounds(a)) is not None), None)
    return None


def describe_type(annotation: Any) -> str:
    """A hint as a reader would say it: 'a float >= 0', 'one of 'adam', 'sgd'', 'an int or null'."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return "any value"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        text = describe_type(args[0])
        limits = bounds(annotation)
        if limits is not None and limits.low is not None:
            text += f" >= {limits.low:g}"
        if limits is not None and limits.high is not None:
            text += f"{' and' if limits.low is not None else ''} <= {limits.high:g}"
        return text
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe_type(a) for a in args)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if annotation in names:
        return names[annotation]
    if origin in (list, Sequence, tuple):
        return f"a list of {describe_type(args[0])}" if args else "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    if inspect.isclass(annotation):
        return f"a {annotation.__name__} ({{class_path, init_args}})"
    return str(annotation).replace("typing.", "")


def check_argument(cls: type, name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid ``name`` argument of ``cls`` (jsonargparse's type check,
    then the bounds of a :class:`Range`), or None when it is."""
    argument = class_arguments(cls)[name]
    try:
        # A copy: jsonargparse turns the mappings inside a list (trainer.callbacks) into Namespaces in
        # place, and the spec keeps plain data (it is stored as JSON in the study).
        _parser(cls).parse_object({name: copy.deepcopy(value)}, _skip_required=True)
    except Exception as error:  # jsonargparse's ArgumentError, or a resolver's own error.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        # The type hint says what was expected; the innermost lines of a nested class_path's
        # error say what is wrong inside it.
        return "; ".join(lines[1:4]) if len(lines) > 1 else (lines[0] if lines else type(error).__name__)
    limits = bounds(argument.annotation)
    if limits is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        if (limits.low is not None and value < limits.low) or (limits.high is not None and value > limits.high):
            return f"out of range ({describe_type(argument.annotation)})"
    return None


def instantiate(class_path: str, init_args: Mapping[str, Any]) -> Any:
    """An instance of ``class_path`` built from ``init_args`` as LightningCLI would build it
    (nested ``{class_path, init_args}`` arguments become instances too)."""
    cls = import_class(class_path)
    parser = _parser(cls)
    config = parser.parse_object(dict(init_args))
    built = parser.instantiate(config)
    return cls(**{name: getattr(built, name) for name in class_arguments(cls) if hasattr(built, name)})


def nested_set(tree: Mapping[str, Any], path: Sequence[str], value: Any) -> dict[str, Any]:
    """A copy of ``tree`` with ``value`` at ``path`` (dicts on the way created as needed)."""
    copy = dict(tree)
    head, *rest = path
    if rest:
        inner = copy.get(head)
        copy[head] = nested_set(inner if isinstance(inner, Mapping) else {}, rest, value)
    else:
        copy[head] = value
    return copy
