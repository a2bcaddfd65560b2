"""Values of class-typed arguments (``{class_path, init_args}``), checked at any depth.

LightningCLI's parser (jsonargparse) judges whether a value is accepted (see
:func:`argument_value`); when it refuses
one, :func:`walk` says where inside the value the problem is: an unknown key on its own line
with a "did you mean", a wrong value of a nested class's argument, a class that is not what
the argument takes, a required argument left out. The rules finesweep adds (a required
argument left null, an input file that does not exist) apply at every depth of an accepted
value too. A space key into a nested class (``model.encoder.init_args.width``) is resolved
by :func:`~finesweep.search.spec.choices.space_targets` to the class, or under a searched
``model.encoder.class_path`` the classes, whose argument it is.

The functions take the collector that records the problems (``checks``); :func:`walk` and
:func:`argument_value` call each other for each nested argument, so every depth is checked by
the same rules.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from finesweep.models import components
from finesweep.search.spec import paths
from finesweep.search.spec.fields import FieldChecks
from finesweep.search.spec.problems import NUMBER_LIKE, KeyPath, describe, format_path, is_number, suggest

# The keys of a class given as a mapping (jsonargparse also takes dict_kwargs, for **kwargs).
SPEC_KEYS = ("class_path", "init_args", "dict_kwargs")
_BASE_TYPES = (int, float, str, bool)


@dataclass(frozen=True)
class Target:
    """Where a spec value goes: argument ``argument`` of ``cls``, or with ``class_slot`` the class
    of that argument's value (``model.encoder.class_path``)."""

    cls: type
    argument: str
    section: str = "model"
    class_slot: bool = False

    @property
    def annotation(self) -> Any:
        return components.class_arguments(self.cls)[self.argument].annotation

    @property
    def kind(self) -> type | None:
        """The value type checked directly (see :func:`base_type`); None for a class slot."""
        return None if self.class_slot else base_type(self.annotation)

    @property
    def limits(self) -> components.Range | None:
        return None if self.class_slot else components.bounds(self.annotation)

    @property
    def choices(self) -> tuple[str, ...]:
        hint = self.annotation
        if typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        return tuple(typing.get_args(hint)) if typing.get_origin(hint) is typing.Literal else ()


def base_type(annotation: Any) -> type | None:
    """int, float, str (also for a Literal of strings), bool, or None for anything else;
    ``Annotated`` and ``Optional`` looked through."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return base_type(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return str if all(isinstance(a, str) for a in typing.get_args(annotation)) else None
    if origin in (typing.Union, types.UnionType):
        kinds = {base_type(a) for a in typing.get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    return next((t for t in _BASE_TYPES if annotation is t), None)


def spec_path(config_path: tuple[str, ...]) -> KeyPath:
    """Where a value of a run's config is written in the spec: ("model", "encoder", "init_args",
    "width") -> ("model", "init_args", "encoder", "init_args", "width")."""
    section, *rest = config_path
    return (section, *rest) if section == "trainer" else (section, "init_args", *rest)


def search_key(path: KeyPath) -> str | None:
    """The space key that searches the value at spec path ``path`` (the inverse of
    :func:`spec_path`), or None inside a list."""
    if any(isinstance(part, int) for part in path) or len(path) < 2:
        return None
    if path[0] == "trainer":
        return ".".join(path)
    return ".".join((path[0], *path[2:])) if path[1] == "init_args" and len(path) > 2 else None


def class_names(bases: tuple[type, ...]) -> str:
    return " or ".join(dict.fromkeys(b.__name__ for b in bases))


def _lineage(cls: type) -> str:
    return ", ".join(b.__name__ for b in cls.__mro__[1:3])


def argument_value(checks: FieldChecks, target: Target, value: Any, path: KeyPath) -> bool:
    """Check one value for ``target`` as LightningCLI's parser does (jsonargparse, through
    nested classes), plus finesweep's rules: a required argument is not null, an input file
    exists, a :class:`~finesweep.models.components.Range` holds. Problems are located at
    any depth; True when the value is accepted."""
    if target.class_slot:
        return class_choice(checks, target, value, path)
    argument = components.class_arguments(target.cls)[target.argument]
    if value is None and argument.required and not components.admits_none(argument.annotation):
        checks.problem(path, f"a value for {target.cls.__name__}'s required argument {target.argument!r}",
                       describe(value), "null leaves it unset: "
                       + required_hint(path, target.cls, target.argument))
        return False
    reason = components.check_argument(target.cls, target.argument, value)
    if reason is None:
        if walk(checks, argument.annotation, value, path, structural=False):
            return False
        return input_exists(checks, target, value, path)
    if not (plain_value(checks, target, value, path)
            or walk(checks, argument.annotation, value, path, structural=True)):
        bare = components.BARE_TYPE_REASON.match(reason.replace(f". Got value: {value}", ""))
        checks.problem(path, components.describe_type(argument.annotation), describe(value), "" if bare else reason)
    return False

def plain_value(checks: FieldChecks, target: Target, value: Any, path: KeyPath) -> bool:
    """A refused number, name or boolean, said in finesweep's words (bounds, choices, the
    YAML reading of the value); True when that reported it."""
    before = len(checks.problems)
    kind, limits = target.kind, target.limits
    if (kind is int or kind is float) and not isinstance(value, bool) and (
            is_number(value) or (isinstance(value, str) and NUMBER_LIKE.match(value.strip()))):
        checks.number(value, path, integer=kind is int, low=limits.low if limits else None,
                      high=limits.high if limits else None)
    elif kind is str and target.choices:
        checks.string(value, path, target.choices)
    elif kind is bool:
        checks.boolean(value, path)
    return len(checks.problems) > before

def input_exists(checks: FieldChecks, target: Target, value: Any, path: KeyPath) -> bool:
    """An input file of the user's model or data (see :mod:`~finesweep.search.spec.paths`)
    that exists; a problem when it does not."""
    if not checks.read_inputs or target.section not in ("model", "data"):
        return True
    missing = paths.missing_input(target.argument, value)
    if missing is not None:
        checks.problem(path, f"an existing file: {target.cls.__name__} reads {target.argument}",
                       f"{missing!r}: no such file", "relative paths are taken from the spec's folder")
    return missing is None

def walk(checks: FieldChecks, annotation: Any, value: Any, path: KeyPath, structural: bool) -> bool:
    """Report what is wrong inside a class-typed ``value`` (a class, or a list of them);
    ``structural``: the parser refused the value, so report its structure too (unknown keys,
    classes), not only finesweep's rules. True when something was reported."""
    if isinstance(value, list):
        item = components.list_item(annotation)
        bases = components.class_bases(item) if item is not None else ()
        reported = False
        for index, entry in enumerate(value):
            if bases and (isinstance(entry, Mapping) or structural):
                reported |= walk_class(checks, bases, entry, (*path, index), structural)
        return reported
    bases = components.class_bases(annotation)
    if not bases:
        return False
    if isinstance(value, Mapping) and ("class_path" in value or "init_args" in value):
        return walk_class(checks, bases, value, path, structural)
    if structural and isinstance(value, str) and "." in value and base_type(annotation) is not str:
        return walk_class(checks, bases, value, path, structural)
    return False


def walk_class(checks: FieldChecks, bases: tuple[type, ...], value: Any, path: KeyPath, structural: bool) -> bool:
    """A class given by its path or as ``{class_path, init_args}`` for an argument that takes
    one of ``bases``."""
    before = len(checks.problems)
    by_path = isinstance(value, str)
    if not by_path and not isinstance(value, Mapping):
        return False
    if not by_path and "class_path" not in value:
        if structural:
            checks.problem((*path, "class_path"), f"a class_path naming a subclass of {class_names(bases)}", "none")
        return len(checks.problems) > before
    class_path = value if by_path else value.get("class_path")
    at = path if by_path else (*path, "class_path")
    cls = resolve(checks, bases, class_path, at, structural)
    if cls is None:
        return len(checks.problems) > before
    init_args: Any = {}
    if not by_path:
        names = components.class_arguments(cls)
        for key in value:
            if key not in SPEC_KEYS and structural:
                hint = (f"{key!r} is an argument of {cls.__name__}: write it under init_args" if key in names
                        else suggest(key, ["class_path", "init_args"]))
                checks.problem((*path, key), "class_path and init_args", f"unknown key {key!r}", hint)
        extra = value.get("dict_kwargs")
        if isinstance(extra, Mapping) and not takes_kwargs(cls):
            # jsonargparse parses these, and the class then refuses them when it is built.
            for key in extra:
                checks.problem((*path, "dict_kwargs", key), f"an argument of {cls.__name__} (it takes no **kwargs)",
                               f"unknown key {key!r}", suggest(key, list(names)))
        init_args = value.get("init_args") or {}
        if not isinstance(init_args, Mapping):
            if structural:
                checks.problem((*path, "init_args"), "a mapping of arguments", describe(init_args))
            return len(checks.problems) > before
    arguments_in(checks, cls, init_args, path if by_path else (*path, "init_args"), structural, by_path)
    return len(checks.problems) > before


def full_class_paths(annotation: Any, value: Any) -> Any:
    """``value`` with each class given by its name alone (``class_path: EarlyStopping``) named by
    its import path, as LightningCLI's parser records it, so that a trial's config names classes
    a plain import finds; anything else as written."""
    if isinstance(value, list):
        item = components.list_item(annotation)
        return [full_class_paths(item, entry) for entry in value] if item is not None else value
    bases = components.class_bases(annotation)
    if not bases or not isinstance(value, Mapping) or not isinstance(value.get("class_path"), str):
        return value
    try:
        cls = components.resolve_class(value["class_path"], bases)
    except components.ComponentError:
        return value
    new = dict(value)
    if "." not in value["class_path"].replace(":", "."):
        new["class_path"] = f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(value.get("init_args"), Mapping):
        arguments = components.class_arguments(cls)
        new["init_args"] = {k: full_class_paths(arguments[k].annotation, v) if k in arguments else v
                            for k, v in value["init_args"].items()}
    return new


def takes_kwargs(cls: type) -> bool:
    """Whether ``cls(...)`` takes keyword arguments beyond its named ones (``**kwargs``)."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return True  # no signature to read: leave it to the class
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def resolve(checks: FieldChecks, bases: tuple[type, ...], class_path: Any, at: KeyPath,
            report: bool = True) -> type | None:
    """The class ``class_path`` names when it is one the argument takes; else None, and a
    problem at ``at`` when ``report``."""
    if not isinstance(class_path, str) or not class_path:
        if report:
            checks.problem(at, "a class path (package.module.ClassName)", describe(class_path))
        return None
    try:
        cls = components.resolve_class(class_path, bases)
    except components.ComponentError as error:
        if report:
            checks.problem(at, f"an importable subclass of {class_names(bases)}", repr(class_path), str(error))
        return None
    if bases and not issubclass(cls, bases):
        if report:
            checks.problem(at, f"a subclass of {class_names(bases)}", f"{class_path} (a subclass of {_lineage(cls)})")
        return None
    return cls


def arguments_in(checks: FieldChecks, cls: type, init_args: Mapping[str, Any], path: KeyPath, structural: bool,
                 by_path: bool = False) -> None:
    """A nested class's arguments: unknown ones (when ``structural``), each value through the
    checker, and its required arguments given."""
    names = list(components.class_arguments(cls))
    given = checks.mapping(dict(init_args), path, names) if structural else {
        k: v for k, v in init_args.items() if k in names}
    for key, item in given.items():
        argument_value(checks, Target(cls, key, str(path[0])), item, (*path, key))
    for name in components.required_missing(cls, [*init_args, *meant(init_args, names)]):
        where = path if by_path else (*path, name)
        found = f"{format_path(path)} names {cls.__name__} without it" if by_path else "none"
        checks.problem(where, f"a value for {cls.__name__}'s required argument {name!r}", found,
                       required_hint((*path, name) if not by_path else (*path, "init_args", name), cls, name))


def meant(written: Any, names: list[str]) -> list[str]:
    """The arguments that unknown keys of ``written`` are close to: a misspelt required argument is
    reported once, as the unknown key with its "did you mean", not again as missing."""
    return [close[0] for key in written if key not in names
            and (close := difflib.get_close_matches(str(key), names, n=1, cutoff=0.6))]


def required_hint(path: KeyPath, cls: type, name: str) -> str:
    """How to give a required argument: where to write it, and the space key that searches it."""
    key = search_key(path)
    annotation = components.class_arguments(cls)[name].annotation
    what = ("{class_path: ..., init_args: {...}}" if components.class_bases(annotation)
            else components.describe_type(annotation))
    return f"give {what} at {format_path(path)}" + (f", or search it as {key}" if key else "")


def class_choice(checks: FieldChecks, target: Target, value: Any, path: KeyPath) -> bool:
    """A value for ``model.ARG.class_path``: a class the argument takes."""
    return resolve(checks, components.class_bases(target.annotation), value, path) is not None


# A space key's class choices: "model.encoder" -> (the parameter searching its class_path, or
# None when the space fixes it, and the class paths it may take).
ClassChoices = Mapping[str, tuple[str | None, tuple[Any, ...]]]


def callback_class(class_path: str) -> type | None:
    """The class a callback's class path names; a bare name, as LightningCLI takes it, from
    Lightning's own callbacks."""
    try:
        return components.import_class(class_path if "." in class_path else f"pytorch_lightning.callbacks.{class_path}")
    except components.ComponentError:
        return None  # Reported by the trainer section's own check.


def set_in(tree: dict[str, Any], path: KeyPath, value: Any) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value
