"""Classes named by class path, as LightningCLI names them: import, check, instantiate.

A run is described the way Lightning users already write it: ``{class_path, init_args}`` for
the model and the data, plus Trainer options. Checking and instantiating go through
jsonargparse, the library LightningCLI itself uses, so an argument accepted here is accepted by
``LightningCLI`` too, nested ``class_path`` arguments included. Nothing here imports torch or
Lightning at module level: a spec is checked before any of that is loaded where it can be.
"""

from __future__ import annotations

import copy
import enum
import functools
import importlib
import inspect
import os
import pathlib
import re
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


# Types whose values are given as they are, never as {class_path, init_args}.
_PLAIN_TYPES = (bool, int, float, str, bytes, dict, list, tuple, set, type(None))


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
    # Imported here: jsonargparse is slow to import.
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, fail_untyped=False, sub_configs=True)
    return parser


@functools.lru_cache(maxsize=64)
def class_arguments(cls: type) -> dict[str, Argument]:
    """The ``__init__`` arguments of ``cls`` as jsonargparse resolves them (``**kwargs`` passed on
    to a parent class included), with their docstring help where there is one."""
    # Imported here: jsonargparse is slow to import.
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
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} values ({', '.join(describe_type(a) for a in args)})"
    if origin in (list, Sequence, tuple):
        return f"a list of {describe_type(args[0])}" if args else "a list"
    if origin in (dict, Mapping):
        return f"a mapping (values: {describe_type(args[1])})" if len(args) == 2 else "a mapping"
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(repr(member.name) for member in annotation)
    if inspect.isclass(annotation) and issubclass(annotation, (os.PathLike, pathlib.PurePath)):
        return f"a path ({annotation.__name__})"
    if inspect.isclass(annotation):
        return f"a {annotation.__name__} ({{class_path, init_args}})"
    return str(annotation).replace("typing.", "")


def check_argument(cls: type, name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid ``name`` argument of ``cls`` (jsonargparse's type check,
    then the bounds of a :class:`Range`), or None when it is."""
    argument = class_arguments(cls)[name]
    try:
        # A copy: jsonargparse turns the dicts and lists it parses into Namespaces in place,
        # which would leak into the spec (and then into a trial's JSON config).
        _parser(cls).parse_object({name: copy.deepcopy(value)}, _skip_required=True)
    except Exception as error:  # jsonargparse's ArgumentError, or a resolver's own error.
        return _reason(str(error)) or type(error).__name__
    limits = bounds(argument.annotation)
    if limits is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        if (limits.low is not None and value < limits.low) or (limits.high is not None and value > limits.high):
            return f"out of range ({describe_type(argument.annotation)})"
    return None


# Lines of jsonargparse's errors that restate the key, the hint or the value given.
_NOISE = ("Parser key", "Does not validate against any of the Union subtypes", "Subtypes:", "Errors:",
          "Given value", "Expected a NoneType")


_CLASS_REPR = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")
# A reason that only restates the expected type (said already by the hint's description).
BARE_TYPE_REASON = re.compile(r"^Expected an? \w+(; Expected an? \w+)*$")


def _reason(text: str) -> str:
    """The lines of a jsonargparse error that say what is wrong, once each, on one line."""
    lines = [_CLASS_REPR.sub(r"\1", line.strip().removeprefix("- ").strip()) for line in text.splitlines()]
    kept = [line for line in lines if line and not line.startswith(_NOISE)]
    return "; ".join(dict.fromkeys(kept))


def instantiate(class_path: str, init_args: Mapping[str, Any]) -> Any:
    """An instance of ``class_path`` built from ``init_args`` as LightningCLI would build it
    (nested ``{class_path, init_args}`` arguments become instances too)."""
    cls = import_class(class_path)
    parser = _parser(cls)
    config = parser.parse_object(copy.deepcopy(dict(init_args)))  # parse_object converts in place
    built = parser.instantiate(config)
    return cls(**{name: getattr(built, name) for name in class_arguments(cls) if hasattr(built, name)})


def class_bases(annotation: Any) -> tuple[type, ...]:
    """The classes a value of ``annotation`` may be given as ``{class_path, init_args}`` (through
    ``Optional``, unions and ``Annotated``), not plain value types or containers."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return class_bases(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return tuple(b for a in typing.get_args(annotation) for b in class_bases(a))
    if (origin is None and inspect.isclass(annotation) and annotation not in _PLAIN_TYPES
            and not issubclass(annotation, (enum.Enum, os.PathLike, pathlib.PurePath))):
        return (annotation,)
    return ()


def list_item(annotation: Any) -> Any:
    """The item hint of the list or sequence an ``annotation`` admits (``list[Callback]`` in
    Lightning's ``Optional[Union[list[Callback], Callback]]``), or None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return list_item(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return next((item for a in typing.get_args(annotation) if (item := list_item(a)) is not None), None)
    if origin in (list, Sequence):
        args = typing.get_args(annotation)
        return args[0] if args else None
    return None


def admits_none(annotation: Any) -> bool:
    """Whether ``None`` is a value of the hint (``Optional``, ``Any``, no hint)."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is None or annotation is type(None):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return admits_none(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(admits_none(a) for a in typing.get_args(annotation))
    return False


def resolve_class(class_path: str, bases: Sequence[type] = ()) -> type:
    """The class a config names: by its full path, or (as jsonargparse also takes it) by the
    bare name of a subclass of one of ``bases``; ComponentError when there is none."""
    if "." not in class_path.replace(":", ".") and bases:
        found = find_class(class_path, bases)
        if found is None:
            names = ", ".join(b.__name__ for b in bases)
            raise ComponentError(f"no single class named {class_path!r} among the subclasses of {names} "
                                 f"imported so far: write its full path (package.module.{class_path})")
        return found
    return import_class(class_path)


def find_class(name: str, bases: Sequence[type]) -> type | None:
    """The subclass of one of ``bases`` called ``name`` among the classes imported so far, as
    jsonargparse resolves a class path given without its module (``class_path: EarlyStopping``);
    None when there is no such class or several."""
    found: dict[str, type] = {}
    pending = list(bases)
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        pending.extend(cls.__subclasses__())
    return next(iter(found.values())) if len(found) == 1 else None


def required_missing(cls: type, given: Sequence[str]) -> list[str]:
    """The required ``__init__`` arguments of ``cls`` (no default) not among ``given``."""
    return [a.name for a in class_arguments(cls).values() if a.required and a.name not in given]


def nested_set(tree: Mapping[str, Any], path: Sequence[str], value: Any) -> dict[str, Any]:
    """A copy of ``tree`` with ``value`` at ``path`` (dicts on the way created as needed, and a
    class given by its path alone turned into ``{class_path: ...}`` to take arguments)."""
    copy = dict(tree)
    head, *rest = path
    if rest:
        inner = copy.get(head)
        if isinstance(inner, str) and rest[0] in ("class_path", "init_args"):
            inner = {"class_path": inner}  # a class given by its path alone, now with arguments
        copy[head] = nested_set(inner if isinstance(inner, Mapping) else {}, rest, value)
    else:
        copy[head] = value
    return copy
