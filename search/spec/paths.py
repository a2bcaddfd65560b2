"""Path arguments of the user's classes, at any depth of ``model:`` and ``data:``.

A relative path is made absolute against the spec's folder, so a sweep started from any
working directory (and its exports) finds the same file. An argument that is clearly an
input, by its type (jsonargparse's existing-path types check themselves) or by its name
(``init_from``, ``checkpoint``, ``*_file``, ``*_path``, ...), must name a file that exists:
every trial would otherwise fail the same way. Outputs (``save_dir``, ``output_path``,
``log_file``, any ``*_dir``) are never required to exist.
"""

from __future__ import annotations

import inspect
import os
import pathlib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finesweep.models import components
from finesweep.search.spec.problems import KeyPath

# Names of arguments that read a file the run needs.
INPUT_NAMES = ("init_from", "checkpoint", "ckpt", "resume_from", "weights_from")
INPUT_SUFFIXES = ("_file", "_path", "_ckpt", "_checkpoint")
# A word of the name that makes it a place the run writes to (or may create), not one it reads.
OUTPUT_WORDS = frozenset(("save", "out", "output", "outputs", "log", "logs", "export", "cache", "dump",
                          "write", "result", "results", "tmp", "temp", "dir", "root", "dest", "target"))
# Values that are patterns or URLs, not a file of this machine: left to the class.
_NOT_A_FILE = ("*", "?", "[", "://")


def is_path_argument(name: str, annotation: Any) -> bool:
    """Arguments that hold a file or folder: resolved against the spec's folder when relative."""
    if name in ("path", "init_from") or name.endswith(("_path", "_dir", "_file")):
        return True
    hints = [annotation, *typing.get_args(annotation)]
    return any(inspect.isclass(h) and issubclass(h, (os.PathLike, pathlib.PurePath)) for h in hints)


def is_input_argument(name: str) -> bool:
    """Whether an argument's name says the run reads the file it names."""
    lowered = name.lower()
    if OUTPUT_WORDS & set(lowered.split("_")):
        return False
    return lowered in INPUT_NAMES or lowered.endswith(INPUT_SUFFIXES)


def missing_input(name: str, value: Any) -> str | None:
    """The path an input argument names when no such file or folder exists, else None."""
    if not is_input_argument(name) or not isinstance(value, (str, os.PathLike)):
        return None
    text = os.fspath(value)
    if not text or any(mark in text for mark in _NOT_A_FILE):
        return None
    return None if Path(text).expanduser().exists() else text


def resolve_relative(value: Any, base: Path) -> Any:
    """``value`` made absolute against ``base`` when it is a relative path string."""
    if isinstance(value, str) and value and not value.startswith("~") and not Path(value).is_absolute():
        return str((base / value).resolve())
    return value


def resolve_paths(cls: type, name: str, value: Any, base: Path) -> tuple[Any, dict[KeyPath, Any]]:
    """``value`` of ``cls``'s argument ``name`` with every relative path in a path argument made
    absolute, inside nested ``{class_path, init_args}`` values too; and each change, by its key
    path relative to the argument. ``value`` itself is not changed."""
    argument = components.class_arguments(cls).get(name)
    if argument is None:
        return value, {}
    if is_path_argument(name, argument.annotation):
        resolved = resolve_relative(value, base)
        return resolved, ({(): resolved} if resolved != value else {})
    changes: dict[KeyPath, Any] = {}
    if isinstance(value, list):
        items = []
        for index, item in enumerate(value):
            new, inner = _resolve_in_class(item, components.class_bases(components.list_item(argument.annotation)),
                                           base)
            items.append(new)
            changes.update({(index, *at): v for at, v in inner.items()})
        return (items if changes else value), changes
    return _resolve_in_class(value, components.class_bases(argument.annotation), base)


def _resolve_in_class(value: Any, bases: tuple[type, ...], base: Path) -> tuple[Any, dict[KeyPath, Any]]:
    if not bases or not isinstance(value, Mapping) or not isinstance(value.get("class_path"), str):
        return value, {}
    init_args = value.get("init_args")
    try:
        cls = components.resolve_class(value["class_path"], bases)
    except components.ComponentError:
        return value, {}  # reported by the check of the value
    if not isinstance(init_args, Mapping):
        return value, {}
    new_args, changes = dict(init_args), {}
    for key, item in init_args.items():
        new, inner = resolve_paths(cls, str(key), item, base)
        new_args[key] = new
        changes.update({("init_args", key, *at): v for at, v in inner.items()})
    return ({**value, "init_args": new_args} if changes else value), changes
