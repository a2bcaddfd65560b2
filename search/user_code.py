"""The user's own code on every process that builds their classes.

A spec names classes by import path; the user's module usually sits beside the spec, not in an
installed package. The spec's folder and the working directory go on the import path of the
driver, of local trial workers (through PYTHONPATH, which Ray's workers inherit), and of
``train``, ``export --reseed`` and ``ensemble``. On a cluster the module files themselves are
shipped to every node with Ray's runtime environment (``py_modules``), so worker nodes need
no copy of them.
"""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from finesweep.search.spec import SweepSpec


def import_roots(spec_dir: str | Path) -> list[str]:
    """Where a spec's class paths are imported from, besides installed packages."""
    return list(dict.fromkeys([str(Path(spec_dir).resolve()), str(Path.cwd().resolve())]))


def add_import_paths(spec_dir: str | Path) -> None:
    """Put the spec's folder and the working directory on this process's import path."""
    put_first_on_path(import_roots(spec_dir))


def put_first_on_path(folders: Iterable[str]) -> None:
    """Put ``folders`` first on this process's import path, in order (a user's `data.py` beside
    the spec is theirs, not an installed package's), skipping any this machine does not have
    (a cluster node gets the modules from Ray's runtime environment instead)."""
    for folder in reversed(list(folders)):
        if folder not in sys.path and Path(folder).is_dir():
            sys.path.insert(0, folder)


def _installed_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[key]).resolve() for key in ("purelib", "platlib", "stdlib") if key in paths]


def module_files(class_paths: Iterable[str], spec_dir: str | Path) -> list[str]:
    """The files or package folders of the user's own top-level modules behind ``class_paths``:
    those found under the import roots, never installed packages (finesweep's included)."""
    roots = [Path(r) for r in import_roots(spec_dir)]
    installed = _installed_roots()
    found: list[str] = []
    for class_path in class_paths:
        top = class_path.replace(":", ".").split(".", 1)[0]
        if top == "finesweep":
            continue
        spec = importlib.util.find_spec(top)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            location = Path(next(iter(spec.submodule_search_locations))).resolve()
        elif spec.origin and spec.origin not in ("built-in", "frozen"):
            location = Path(spec.origin).resolve()
        else:
            continue
        if any(location.is_relative_to(i) for i in installed) or not any(location.is_relative_to(r) for r in roots):
            continue
        if str(location) not in found:
            found.append(str(location))
    return found


def class_paths_in(tree: object) -> list[str]:
    """Every ``class_path`` value in a nested config (model, data, nested components)."""
    found: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("class_path"), str):
                found.append(node["class_path"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def shipped_modules(spec: SweepSpec) -> list[str]:
    """The files of the user's modules that ``spec``'s classes live in: what a cluster's nodes
    are sent, as no shared folder is assumed."""
    return module_files(class_paths_in(spec.training_config({})), spec.base_dir)
