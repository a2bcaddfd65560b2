"""Reading back what a run directory holds, as data: the one reader of its files, with bounds.

A run directory may be shared, downloaded or edited, so nothing read from it is trusted: the
spec copy, the ``#%`` records of exports, ``robust.yaml``, ``ensemble.yaml`` and
``ray_session.json`` are read through the hardened YAML loader (or a size-bounded JSON read),
and every field is checked before it is used: numbers within bounds (threads from 1 to
MAX_THREADS; `train` caps them at this machine's CPUs), names of the form a sweep writes,
paths absolute and, where a path belongs to the run directory, inside it. A violation is a
:class:`RunFileError`: one line naming the file, the field, what was expected and what was
found. Nothing here imports the user's code.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finesweep.search.run_dir import SPEC_COPY
from finesweep.search.spec.loading import SPEC_DIR_RECORD, parse_yaml_text, read_text
from finesweep.search.spec.problems import KeyPath, Problem, SpecError, bound_text, describe

# A metric, parameter or sweep name as finesweep writes them: printable, one line, short.
NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_PATH_CHARS = 4096
# Bounds on the numbers a run's files may hold: a sweep never needs more.
MAX_TRIALS = 2**31 - 1
MAX_EPOCHS = 10**7
MAX_THREADS = 4096
MAX_ENTRIES = 10_000


# The lines of an exported config that carry finesweep's record of its trial (YAML after the prefix).
RECORD_PREFIX = "#% "


class RunFileError(SpecError):
    """A file of a run directory holds something no finesweep command wrote: one line. A
    SpecError, so a reader of specs and exports reports it as it reports theirs."""

    def __init__(self, source: str | Path, problem: Problem) -> None:
        self.source = str(source)
        self.problems = [problem]
        Exception.__init__(self, problem.render(self.source))


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def read_yaml(path: str | Path, text: str | None = None) -> tuple[Any, Mapping[KeyPath, int]]:
    """A YAML file of the run directory under the spec loader's limits (size, depth, aliases,
    safe tags, each key once); its first problem as a :class:`RunFileError`."""
    try:
        data, marks, duplicates = parse_yaml_text(str(path), read_text(path) if text is None else text)
    except SpecError as error:
        raise RunFileError(path, error.problems[0]) from None
    if duplicates:
        raise RunFileError(path, duplicates[0])
    return data, marks


def read_json(path: str | Path) -> Any:
    """A JSON file of the run directory, within the same size limit as its YAML files."""
    try:
        text = read_text(path)
    except SpecError as error:
        raise RunFileError(path, error.problems[0]) from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise RunFileError(path, Problem((), "JSON written by finesweep", f"unreadable JSON ({error})"[:200])) from None


class Fields:
    """Checks of the values read from one file; each failure raises at once (one line)."""

    def __init__(self, source: str | Path, marks: Mapping[KeyPath, int] | None = None, prefix: str = "",
                 lines: list[int] | None = None) -> None:
        self.source = str(source)
        self.marks = marks or {}
        # Shown before the first key ("#% " for an export's record lines, "user_attrs." for a study's).
        self.prefix = prefix
        # The file's line of each line of the text that was parsed (the `#%` lines of an export).
        self.lines = lines

    def fail(self, key: KeyPath, expected: str, found: str, hint: str = "") -> RunFileError:
        line = next((self.marks[key[:depth]] for depth in range(len(key), 0, -1) if key[:depth] in self.marks), None)
        if line is not None and self.lines is not None:
            line = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        shown = (f"{self.prefix}{key[0]}", *key[1:]) if self.prefix and key else key
        return RunFileError(self.source, Problem(shown, expected, found, hint, line))

    def mapping(self, value: Any, key: KeyPath, *, limit: int = MAX_ENTRIES) -> dict[str, Any]:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise self.fail(key, "a mapping with names as keys", describe(value))
        if len(value) > limit:
            raise self.fail(key, f"at most {limit} entries", f"{len(value)} entries")
        return value

    def integer(self, value: Any, key: KeyPath, low: int, high: int, hint: str = "") -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"an integer from {low} to {high}", describe(value), hint)
        return value

    def number(self, value: Any, key: KeyPath, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not low <= value <= high:
            raise self.fail(key, f"a number from {bound_text(low)} to {bound_text(high)}", describe(value))
        return float(value)

    def name(self, value: Any, key: KeyPath, pattern: re.Pattern[str] = NAME) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise self.fail(key, "a name as finesweep writes it (one printable line)", describe(value))
        return value

    def choice(self, value: Any, key: KeyPath, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(key, f"one of {', '.join(choices)}", describe(value))
        return value

    def absolute_path(self, value: Any, key: KeyPath) -> Path:
        if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS or "\x00" in value \
                or not os.path.isabs(value):
            raise self.fail(key, "an absolute path", describe(value))
        return Path(os.path.normpath(value))

    def path_inside(self, value: Any, key: KeyPath, root: Path) -> Path:
        """An absolute path inside ``root`` (symbolic links followed), as the sweep wrote it."""
        path = self.absolute_path(value, key)
        if not path.resolve().is_relative_to(root.resolve()):
            raise self.fail(key, f"a path inside {root}", describe(value), "a run's own files stay in its folder")
        return path


@dataclass(frozen=True)
class RunInfo:
    """What the views of a run need to know about it, with no user code: read from the spec
    copy as plain data (:func:`read_spec_copy`) or taken from a parsed spec (:meth:`of_spec`)."""

    name: str
    task_label: str
    metric: str
    # None: the spec copy left the mode to the metric's name; the study's direction says it
    # (results.load_sweep). Never guessed here.
    mode: str | None
    param_names: tuple[str, ...]
    storage: str | None
    trials: int
    max_epochs: int
    cpus: float = 1.0
    gpus: float = 0.0
    concurrency: int = 1
    seed: int | None = None
    # Workers per trial (resources.workers): `train` and the retraining commands use as many.
    workers: int = 1
    # The original spec's folder: the user's modules are imported from there by the commands
    # that train (never by a view).
    spec_dir: str = "."
    # Every objective as (name, mode), the first being metric/mode; bounds on logged values;
    # the spec's `select:` rule as written (None: the knee of the front).
    objectives: tuple[tuple[str, str], ...] = ()
    constraints: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    select: Mapping[str, Any] | None = None

    @classmethod
    def of_spec(cls, spec: Any) -> RunInfo:
        return cls(name=spec.name, task_label=spec.task_label, metric=spec.metric, mode=spec.mode,
                   param_names=tuple(spec.space.names), storage=spec.storage, trials=spec.budget.trials,
                   max_epochs=spec.budget.max_epochs, cpus=spec.resources.cpus, gpus=spec.resources.gpus,
                   concurrency=spec.resources.concurrency, seed=spec.strategy.seed, spec_dir=str(spec.base_dir),
                   objectives=tuple((o.name, o.mode) for o in spec.objectives), constraints=spec.constraints,
                   select=spec.raw.get("select"), workers=spec.resources.workers)

    @property
    def threads(self) -> int:
        """Intra-op threads of one trial: its whole CPUs."""
        return max(1, int(self.cpus))


def spec_dir_record(source: str | Path, text: str) -> Path | None:
    """The ``#% spec_dir:`` line of a spec copy, checked (absolute); None when it has none."""
    for line in text.splitlines():
        if line.startswith(SPEC_DIR_RECORD):
            return Fields(source).absolute_path(line[len(SPEC_DIR_RECORD):].strip(), ("#% spec_dir",))
    return None


def read_spec_copy(run_dir: str | Path) -> RunInfo:
    """The run directory's ``spec.yaml`` as plain data, each field the views use checked."""
    path = Path(run_dir) / SPEC_COPY
    try:
        text = read_text(path)
    except SpecError as error:
        raise RunFileError(path, error.problems[0]) from None
    data, marks = read_yaml(path, text)
    check = Fields(path, marks)
    data = check.mapping(data, (), limit=64)
    name = check.name(data.get("name"), ("name",), SWEEP_NAME)
    objectives: tuple[tuple[str, str], ...] = ()
    if "objectives" in data:
        objectives = tuple((check.name(k, ("objectives", k)), check.choice(v, ("objectives", k), ("min", "max")))
                           for k, v in check.mapping(data["objectives"], ("objectives",)).items())
        if not objectives:
            raise check.fail(("objectives",), "at least one objective", "none")
        metric, mode = objectives[0]
    else:
        metric = check.name(data.get("metric"), ("metric",))
        mode = check.choice(data["mode"], ("mode",), ("min", "max")) if data.get("mode") is not None else None
        objectives = ((metric, mode),) if mode is not None else ()
    constraints = {
        check.name(k, ("constraints", k)): {check.choice(side, ("constraints", k, side), ("min", "max")):
                                            check.number(v, ("constraints", k, side), -1e300, 1e300)
                                            for side, v in check.mapping(bound, ("constraints", k)).items()}
        for k, bound in check.mapping(data.get("constraints") or {}, ("constraints",)).items()}
    select = check.mapping(data["select"], ("select",)) if data.get("select") is not None else None
    task = data.get("task")
    if task is not None:
        label = check.name(task, ("task",))
    else:
        model = check.mapping(data.get("model"), ("model",))
        label = check.name(model.get("class_path"), ("model", "class_path")).replace(":", ".").rsplit(".", 1)[-1]
    space = check.mapping(data.get("space"), ("space",))
    params = [check.name(key, ("space", key)) for key, entry in space.items()
              if isinstance(entry, dict) and "type" in entry]
    storage = data.get("storage")
    if storage is not None and (not isinstance(storage, str) or "://" not in storage or len(storage) > MAX_PATH_CHARS):
        raise check.fail(("storage",), "a database URL", describe(storage))
    budget = check.mapping(data.get("budget") or {}, ("budget",))
    resources = check.mapping(data.get("resources") or {}, ("resources",))
    strategy = data.get("strategy") if isinstance(data.get("strategy"), dict) else {}
    seed = strategy.get("seed")
    spec_dir = spec_dir_record(path, text)
    return RunInfo(
        name=name, task_label=label, metric=metric, mode=mode, param_names=_condition_order(space, params),
        storage=storage, trials=check.integer(budget.get("trials", 20), ("budget", "trials"), 1, MAX_TRIALS),
        max_epochs=check.integer(budget.get("max_epochs", 10), ("budget", "max_epochs"), 1, MAX_EPOCHS),
        cpus=check.number(resources.get("cpus", 1), ("resources", "cpus"), 0.001, 1e6),
        gpus=check.number(resources.get("gpus", 0), ("resources", "gpus"), 0, 1e4),
        concurrency=check.integer(resources.get("concurrency", 2), ("resources", "concurrency"), 1, 100_000),
        workers=check.integer(resources.get("workers", 1), ("resources", "workers"), 1, 1024),
        seed=None if seed is None else check.integer(seed, ("strategy", "seed"), 0, MAX_TRIALS),
        spec_dir=str(spec_dir if spec_dir is not None else Path(run_dir).resolve()),
        objectives=objectives, constraints=constraints, select=select)


def _condition_order(space: Mapping[str, Any], names: list[str]) -> tuple[str, ...]:
    """The searched names in sampling order, as the sweep printed them: a condition's parameter
    before the parameters that depend on it (the spec's order otherwise)."""
    parents = {name: [p for p in (space[name].get("when") or {}) if p in names and p != name]
               if isinstance(space[name].get("when"), dict) else [] for name in names}
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and all(p in ordered for p in parents[n])]
        if not ready:  # A cycle no sweep accepted: keep the rest as written.
            ready = [n for n in names if n not in ordered]
        ordered.extend(ready[:1])
    return tuple(ordered)


def run_dir_of(path: str | Path) -> Path | None:
    """The run directory an export or ensemble file sits in (its folder, or the folder above
    for ``top/rank_NN.yaml``): the nearest holding a spec copy; None for a file on its own."""
    folder = Path(path).resolve().parent
    for candidate in (folder, folder.parent):
        if (candidate / SPEC_COPY).is_file():
            return candidate
    return None


def check_export_record(source: str | Path, record: Any, marks: Mapping[KeyPath, int] | None = None,
                        lines: list[int] | None = None) -> dict[str, Any]:
    """finesweep's ``#%`` record of an export, every field it may hold checked; an export in a
    run directory must also name that run's spec folder and its own checkpoints. ``lines``: the
    file's line of each record line, for the messages."""
    check = Fields(source, marks, "#% ", lines)
    if record is None:
        return {}
    record = check.mapping(record, ("record",), limit=64)
    if "finesweep_export" in record:
        check.integer(record["finesweep_export"], ("finesweep_export",), 1, 100)
    for key in ("sweep", "task", "metric"):
        if record.get(key) is not None:
            check.name(record[key], (key,))
    if record.get("mode") is not None:
        check.choice(record["mode"], ("mode",), ("min", "max"))
    if record.get("value") is not None:
        check.number(record["value"], ("value",), -1e308, 1e308)
    for key, low in (("best_epoch", 0), ("trial", 0), ("rank", 1)):
        if record.get(key) is not None:
            check.integer(record[key], (key,), low, MAX_TRIALS)
    if record.get("params") is not None:
        check.mapping(record["params"], ("params",))
    if record.get("workers") is not None:
        check.integer(record["workers"], ("workers",), 1, 1024)
    if record.get("threads") is not None:
        # A config exported on a bigger machine still trains here (`train` uses at most this
        # machine's CPUs); a count no machine has is not a config finesweep wrote.
        check.integer(record["threads"], ("threads",), 1, MAX_THREADS)
    run_dir = run_dir_of(source)
    if record.get("spec_dir") is not None:
        spec_dir = check.absolute_path(record["spec_dir"], ("spec_dir",))
        if run_dir is not None:
            expected = read_spec_copy(run_dir).spec_dir
            if os.path.normpath(expected) != str(spec_dir):
                raise check.fail(("spec_dir",), f"the spec folder of the run in {run_dir} ({expected})",
                                 repr(record["spec_dir"]),
                                 "the user's modules are imported from there: an export names its own run's")
    if record.get("checkpoint") is not None:
        if run_dir is not None:
            check.path_inside(record["checkpoint"], ("checkpoint",), run_dir)
        else:
            check.absolute_path(record["checkpoint"], ("checkpoint",))
    return record


def record_of_text(source: str, text: str) -> dict[str, Any]:
    """The ``#%`` record of an export, every field checked (see check_export_record)."""
    numbered = [(number, line[len(RECORD_PREFIX):]) for number, line in enumerate(text.splitlines(), start=1)
                if line.startswith(RECORD_PREFIX)]
    if not numbered:
        return {}
    record, marks = read_yaml(source, "\n".join(line for _, line in numbered))
    return check_export_record(source, record, marks, [number for number, _ in numbered])


def read_record(path: str | Path) -> dict[str, Any]:
    """finesweep's record of an exported trial (the ``#%`` lines of its file), checked."""
    try:
        text = read_text(path)
    except SpecError as error:
        raise RunFileError(path, error.problems[0]) from None
    return record_of_text(str(path), text)
