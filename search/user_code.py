"""The user's own code on every process that builds their classes, and only there.

A spec names classes by import path; the user's module usually sits beside the spec, not in an
installed package. The spec's folder and the working directory go on the import path of the
commands that train (``sweep``, ``resume``, ``train``, ``export --reseed``, ``ensemble``) and of
their local trial workers; on a cluster the module files are shipped to every node with Ray's
runtime environment (``py_modules``), so worker nodes need no copy of them. The views (``status``,
``report``, ``export``, ``dashboard``, ``tensorboard``) never add them: they import nothing of
the user's.

The user's folders go *after* the standard library and the installed packages, never before:
a file in a spec folder or run directory named like an installed package (``optuna.py``,
``yaml.py``) must not run in its place. A class path whose module has such a name is refused
when the spec is checked (:func:`shadowing_problem`), as it could never be imported.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.machinery
import importlib.util
import os
import signal
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from finesweep.search.spec import SweepSpec

# The folders this process put on its import path for the user's modules.
_USER_FOLDERS: list[str] = []


def import_roots(spec_dir: str | Path) -> list[str]:
    """Where a spec's class paths are imported from, besides installed packages."""
    return list(dict.fromkeys([str(Path(spec_dir).resolve()), str(Path.cwd().resolve())]))


def add_import_paths(spec_dir: str | Path) -> None:
    """Put the spec's folder and the working directory on this process's import path, after
    the standard library and the installed packages."""
    add_user_folders(import_roots(spec_dir))


def add_user_folders(folders: Iterable[str]) -> None:
    """Append ``folders`` to this process's import path, in order, skipping any this machine
    does not have (a cluster node gets the modules from Ray's runtime environment instead).
    A folder already on the path ahead of the installed packages (Python's own entry for the
    working directory, Ray's for the driver's) is moved behind them."""
    for folder in folders:
        _USER_FOLDERS.append(folder)
        if not Path(folder).is_dir():
            continue
        while folder in sys.path:
            sys.path.remove(folder)
        sys.path.append(folder)


def demote_working_directory() -> None:
    """Move the working directory (``''`` under ``python -m`` or ``-c``) behind the installed
    packages on this process's import path: a command run from inside a run directory or spec
    folder must not import a planted ``yaml.py`` instead of PyYAML."""
    here = str(Path.cwd().resolve())
    moved = [entry for entry in sys.path if entry in ("", ".") or _resolved(entry) == here]
    for entry in moved:
        sys.path.remove(entry)
    sys.path.extend(entry for entry in dict.fromkeys(moved) if entry not in ("", "."))
    if moved and here not in sys.path:
        sys.path.append(here)


def _resolved(entry: str) -> str:
    try:
        return str(Path(entry).resolve())
    except OSError:
        return entry


def _installed_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[key]).resolve() for key in ("purelib", "platlib", "stdlib") if key in paths]


def _user_folders() -> list[str]:
    return list(dict.fromkeys([*_USER_FOLDERS, str(Path.cwd().resolve())]))


def shadowing_problem(class_path: str, folders: Iterable[str] | None = None) -> str | None:
    """Why ``class_path`` cannot name the user's own module: a file or package of its top-level
    name in one of the user's ``folders`` (default: those this process added, and the working
    directory) has the name of a standard-library module or an installed package, which is
    imported instead. None when there is no such clash."""
    top = class_path.replace(":", ".").split(".", 1)[0]
    if not top or top == "finesweep":
        return None
    user_folders = [f for f in (folders if folders is not None else _user_folders()) if Path(f).is_dir()]
    mine = importlib.machinery.PathFinder.find_spec(top, user_folders)
    if mine is None:
        return None
    others = [p for p in sys.path if p not in ("", ".") and _resolved(p) not in {_resolved(f) for f in user_folders}]
    theirs = None if top in sys.builtin_module_names else importlib.machinery.PathFinder.find_spec(top, others)
    if theirs is None and top not in sys.builtin_module_names and top not in sys.stdlib_module_names:
        return None
    location = _where(mine) or top
    installed = ("the standard library" if top in sys.stdlib_module_names or top in sys.builtin_module_names
                 else f"an installed package ({_where(theirs)})")
    return (f"{location} has the name of {installed}, which is imported instead: rename your module "
            "and its class paths")


def _where(spec: Any) -> str:
    if spec is None:
        return ""
    if spec.origin not in (None, "namespace", "built-in", "frozen"):
        return str(spec.origin)
    return str(next(iter(spec.submodule_search_locations or []), ""))


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


def prepare_recorded_configs(configs: Iterable[Mapping[str, Any]], spec_dir: str | Path) -> list[str]:
    """For a command that trains configs a sweep recorded (``export --reseed``, ``ensemble``):
    put the spec's folder on the import path, refuse a class path that names a module of the
    user's shadowed by an installed one (ValueError), and return the module files to ship."""
    add_import_paths(spec_dir)
    class_paths = [path for config in configs for path in class_paths_in(config)]
    for class_path in dict.fromkeys(class_paths):
        problem = shadowing_problem(class_path)
        if problem is not None:
            raise ValueError(f"class path {class_path!r}: {problem}")
    return module_files(class_paths, spec_dir)


def neutral_directory() -> str:
    """An empty, private folder for this process to stand in while Ray starts: a local Ray puts
    the driver's working directory first on every worker's import path, ahead of the standard
    library, so a driver started from a run directory holding ``optuna.py`` would have its
    workers import that file. Kept (empty, owner-only) for the life of the process."""
    global _NEUTRAL
    if _NEUTRAL is None or not os.path.isdir(_NEUTRAL):
        _NEUTRAL = tempfile.mkdtemp(prefix="finesweep-ray-")
        atexit.register(_remove_neutral, _NEUTRAL)
    return _NEUTRAL


_NEUTRAL: str | None = None


def _remove_neutral(folder: str) -> None:
    try:
        os.rmdir(folder)
    except OSError:
        pass


# How long the driver waits for the user's code before Ray starts: importing the module, the
# DataModule's __init__ and the check_inputs hooks. Reading a large dataset may take minutes.
TIMEOUT_VAR = "FINESWEEP_INPUT_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
# After this long a line says what the driver is waiting for, instead of silence.
NOTE_AFTER_S = 20.0


class UserCodeTimeout(BaseException):
    """The user's code did not return in time. A BaseException, like KeyboardInterrupt, so the
    ``except Exception`` of a check (or of the user's code) does not swallow it."""


@contextlib.contextmanager
def time_limit(what: str, limit_s: float | None = None, hint: str | None = None) -> Iterator[None]:
    """Bound the user's code run in the main thread (``what`` it does, for the messages): a
    note on stderr after NOTE_AFTER_S, :class:`UserCodeTimeout` after the limit (TIMEOUT_VAR,
    default DEFAULT_TIMEOUT_S; ``limit_s`` when that is shorter, with ``hint`` as the message's
    advice). Code stuck in C that never returns to Python is not bounded."""
    try:
        limit = float(os.environ.get(TIMEOUT_VAR, DEFAULT_TIMEOUT_S))
    except ValueError:
        limit = DEFAULT_TIMEOUT_S
    if limit_s is not None and limit_s > 0 and (limit <= 0 or limit_s < limit):
        limit = limit_s
    else:
        hint = None
    if limit <= 0 or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return
    advice = hint or (f"a DataModule __init__ or check_inputs that waits forever? set {TIMEOUT_VAR} to wait "
                      "longer")
    message = f"{what} did not finish within {limit:g} s; nothing was started ({advice})"

    def on_alarm(signum: int, frame: Any) -> None:
        raise UserCodeTimeout(message)

    after = min(NOTE_AFTER_S, limit / 2)
    note = threading.Timer(after, lambda: print(
        f"finesweep: still waiting for {what} ({after:g} s so far; giving up after {limit:g} s)",
        file=sys.stderr, flush=True))
    note.daemon = True
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    note.start()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        note.cancel()
