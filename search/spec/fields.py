"""The checks every spec section is built from: mappings, numbers, names, booleans, storage URLs.

:class:`FieldChecks` holds what a check needs (the file, the line of every key path, the
problems found so far) and records each problem where it was written instead of raising, so
the whole spec is checked in one pass; nothing here knows a section by name. A section made
only of typed values (budget, resources, a strategy's or scheduler's options) is declared as
a dataclass or a factory signature and checked by :mod:`~finesweep.search.spec.typed`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from finesweep.search.spec.problems import (
    NUMBER_LIKE,
    KeyPath,
    Problem,
    bound_text,
    describe,
    did_you_mean,
    is_number,
    number_text_hint,
)

MAX_INTEGER = 2**53
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")


class FieldChecks:
    """The problems collector every section's check function is given: it records each
    problem where it was written (the file, the line of every key path) and checks single
    values, each reporting at most one located problem. Not subclassed: a section's checks are
    plain functions taking it, with what else they need as arguments."""

    def __init__(self, source: str, marks: Mapping[KeyPath, int], base_dir: Path | None = None, *,
                 read_inputs: bool = True) -> None:
        self.source = source
        self.marks = marks
        self.problems: list[Problem] = []
        # Relative paths are relative to the spec's own folder, wherever the command runs.
        self.base_dir = base_dir or Path(source).resolve().parent
        # Key path -> the absolute path a relative one was made, for the run's copy of the spec.
        self.resolved_paths: dict[KeyPath, Any] = {}
        # Whether the user's input files are looked at (see spec.parse_spec): not for the views
        # of a finished run, which train nothing.
        self.read_inputs = read_inputs

    @contextlib.contextmanager
    def collecting(self) -> Iterator[list[Problem]]:
        """Problems found inside the block go to the list it yields instead of the spec's."""
        saved, self.problems = self.problems, []
        try:
            yield self.problems
        finally:
            self.problems = saved

    def problem(self, path: KeyPath, expected: str, found: str, hint: str = "") -> None:
        line = None
        for depth in range(len(path), -1, -1):
            if path[:depth] in self.marks:
                line = self.marks[path[:depth]] or None
                if line is None:  # Set by an override, so the file's line would point at the wrong value.
                    hint = f"{hint}; " if hint else ""
                    hint += "this value came from the command line"
                break
        self.problems.append(Problem(tuple(path), expected, found, hint, line))

    def mapping(self, value: Any, path: KeyPath, allowed: Sequence[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, "a mapping", describe(value))
            return {}
        for key in value:
            if key not in allowed:
                expected = f"one of the keys {', '.join(allowed)}" if allowed else "no keys here"
                self.problem((*path, key), expected, f"unknown key {key!r}", did_you_mean(key, allowed))
        return {k: v for k, v in value.items() if k in allowed}

    def number(self, value: Any, path: KeyPath, *, integer: bool = False, low: float | None = None,
               high: float | None = None, low_open: bool = False) -> float | int | None:
        kind = "an integer" if integer else "a number"
        if isinstance(value, str) and NUMBER_LIKE.match(value.strip()):
            self.problem(path, kind, describe(value), number_text_hint(value))
            return None
        if not is_number(value) or (integer and isinstance(value, float) and not value.is_integer()):
            self.problem(path, kind, describe(value))
            return None
        if integer:
            value = int(value)
            if abs(value) > MAX_INTEGER:
                self.problem(path, "an integer of at most 2**53 in size", describe(value),
                             "Optuna stores numbers as floats, which lose larger integers")
                return None
        if low is not None and (value <= low if low_open else value < low):
            self.problem(path, f"{kind} {'>' if low_open else '>='} {bound_text(low)}", repr(value))
            return None
        if high is not None and value > high:
            self.problem(path, f"{kind} <= {bound_text(high)}", repr(value))
            return None
        return value

    def string(self, value: Any, path: KeyPath, choices: Sequence[str] | None = None) -> str | None:
        if not isinstance(value, str) or not value:
            expected = f"one of {', '.join(choices)}" if choices else "a non-empty string"
            self.problem(path, expected, describe(value))
            return None
        if choices is not None and value not in choices:
            self.problem(path, f"one of {', '.join(choices)}", repr(value), did_you_mean(value, choices))
            return None
        return value

    def boolean(self, value: Any, path: KeyPath) -> bool:
        if not isinstance(value, bool):
            self.problem(path, "true or false", describe(value))
            return False
        return value

    def storage(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or "://" not in value:
            self.problem(("storage",), "a database URL such as sqlite:///path/study.db or "
                         "postgresql://user@host/db", describe(value))
            return None
        scheme = value.split("://", 1)[0].split("+", 1)[0]
        if scheme not in STORAGE_SCHEMES:
            self.problem(("storage",), f"a SQLAlchemy URL scheme ({', '.join(STORAGE_SCHEMES)})",
                         repr(scheme), did_you_mean(scheme, STORAGE_SCHEMES))
            return None
        if scheme == "sqlite":
            return self.sqlite_storage(value)
        missing = missing_driver(value)
        if missing:
            self.problem(("storage",), f"a {scheme} URL whose database driver is installed", missing,
                         "install the driver, or use sqlite:///path/study.db")
            return None
        return value

    def sqlite_storage(self, value: str) -> str | None:
        """An SQLite URL with an absolute path: a relative one would name another file when
        the sweep is resumed from another folder."""
        scheme, rest = value.split("://", 1)
        path = rest[1:] if rest.startswith("/") else rest
        if not path or path == ":memory:" or path.startswith("file::memory:") or "mode=memory" in path:
            self.problem(("storage",), "an SQLite file such as sqlite:///path/study.db",
                         f"{value!r}, an in-memory database", "the study would be lost when the sweep ends")
            return None
        if path.startswith("file:"):
            return value
        return f"{scheme}:///{os.path.abspath(path)}"


def missing_driver(url: str) -> str | None:
    """Why the URL's database driver cannot be loaded, or None when it can."""
    # SQLAlchemy takes a tenth of a second: only a spec naming a non-SQLite storage URL needs it.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        return str(error)
    except ImportError as error:
        return f"its driver is not installed ({error.name or error})"
    return None
