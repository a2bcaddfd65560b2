"""The sweep spec: one YAML file parsed once into typed objects, with every problem reported at once.

Validation collects :class:`Problem` objects (file, line, key path, expected, found, hint)
instead of stopping at the first one, and nothing here starts Ray or imports torch, so a
wrong spec is rejected in well under a second, before any compute or any file is written.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from finesweep.models import components
from finesweep.models.tasks import TASKS, TaskAlias
from finesweep.search import spec_components as sc
from finesweep.search.space import (
    CategoricalParam,
    Condition,
    FloatParam,
    IntParam,
    Param,
    SearchSpace,
)
from finesweep.search.spec_components import Component

KeyPath = tuple[Any, ...]

MAX_SPEC_BYTES = 1 << 20
# Bounds the work of walking a spec whose aliases expand exponentially ("billion laughs"), and of
# composing a huge one: PyYAML needs seconds for 1 MiB of keys. A real spec has a few hundred nodes.
MAX_SPEC_NODES = 20_000
# A spec nests about five levels (space -> param -> when -> values). PyYAML's scanner slows
# quadratically with flow nesting and its composer recurses, so deeper input is refused early.
MAX_SPEC_DEPTH = 32
MAX_CHOICES = 1_000
MAX_INTEGER = 2**53
# Trial seeds are the strategy seed plus the trial number, and numpy and Lightning take seeds
# below 2**32: this leaves room for two billion trials.
MAX_SEED = 2**31 - 1

TOP_LEVEL_KEYS = (
    "name", "description", "task", "model", "data", "trainer", "metric", "mode", "space", "strategy",
    "scheduler", "budget", "resources", "storage", "max_failures", "checkpoints",
)
# Trials whose model.pt is kept after a sweep (for ensembles and retraining); null keeps all.
DEFAULT_KEEP_BEST = 5
PARAM_KEYS = {
    "float": ("type", "low", "high", "log", "step", "when"),
    "int": ("type", "low", "high", "log", "step", "when"),
    "categorical": ("type", "choices", "when"),
}
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")
_NUMBER_LIKE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The name becomes a folder name (runs/<name>) and a study key: well below the 255 bytes
# a file system allows for one name.
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class Problem:
    path: KeyPath
    expected: str
    found: str
    hint: str = ""
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        key = format_path(self.path) or "(top level)"
        text = f"{where}: {key}: expected {self.expected}, found {self.found}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class SpecError(Exception):
    """A spec that cannot run; ``problems`` lists every reason, not just the first."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        lines = [f"{source}: {count} problem{'s' if count != 1 else ''} in the sweep spec:"]
        lines += [f"  - {p.render(source)}" for p in self.problems]
        super().__init__("\n".join(lines))


def format_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass(frozen=True)
class StrategySpec:
    name: str = "global"
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass(frozen=True)
class SchedulerSpec:
    name: str = "asha"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetSpec:
    trials: int = 20
    max_epochs: int = 10
    time_limit_s: float | None = None
    # A trial that reports no epoch for this long is killed and recorded FAIL.
    trial_timeout_s: float | None = None


@dataclass(frozen=True)
class ResourcesSpec:
    cpus: float = 1.0
    gpus: float = 0.0
    concurrency: int = 2
    # Memory a trial may allocate beyond its loaded worker; over it, the trial fails.
    memory_mb: float | None = None


@dataclass(frozen=True)
class SweepSpec:
    name: str
    # The built-in task the spec named by its short name, or None for a model named by class path.
    task: TaskAlias | None
    model: Component
    data: Component
    # Fixed Trainer options (LightningCLI's `trainer:` section).
    trainer: Mapping[str, Any]
    metric: str
    mode: str
    space: SearchSpace
    strategy: StrategySpec
    scheduler: SchedulerSpec
    budget: BudgetSpec
    resources: ResourcesSpec
    storage: str | None
    max_failures: int
    source: str
    # The validated mapping (overrides applied), written to the run directory.
    raw: Mapping[str, Any]
    keep_best_checkpoints: int | None = DEFAULT_KEEP_BEST
    # Space entry name -> where its value goes: ("model", "lr"), ("trainer", "gradient_clip_val"),
    # ("model", "encoder", "init_args", "width").
    targets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The spec's folder: relative paths and the user's modules are found from there.
    base_dir: str = "."

    @property
    def task_label(self) -> str:
        """The task's short name, or the model's class name."""
        return self.task.name if self.task is not None else self.model.class_path.rsplit(".", 1)[-1]

    def training_config(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """One trial's complete config in LightningCLI's terms (``model``, ``data``, ``trainer``):
        the spec's fixed arguments with the space's fixed values and ``sampled`` put in place."""
        config: dict[str, Any] = {"model": self.model.as_config(), "data": self.data.as_config(),
                                  "trainer": dict(self.trainer)}
        for name, value in {**self.space.fixed, **sampled}.items():
            section, *rest = self.targets[name]
            if section == "trainer":
                config["trainer"] = components.nested_set(config["trainer"], rest, value)
            else:
                config[section]["init_args"] = components.nested_set(config[section]["init_args"], rest, value)
        if self.task is not None:
            for data_argument, model_argument in self.task.links.items():
                if data_argument in config["data"]["init_args"]:
                    config["model"]["init_args"][model_argument] = config["data"]["init_args"][data_argument]
        return config


# --------------------------------------------------------------------------- loading


def _line_marks(root: yaml.Node) -> tuple[dict[KeyPath, int], list[Problem], bool]:
    """The line of every key path, keys given twice, and whether the walk stayed within
    MAX_SPEC_NODES. Iterative, so a deeply nested file cannot exhaust Python's stack; aliases
    are walked at every place they are used, so an alias bomb runs out of budget quickly."""
    marks: dict[KeyPath, int] = {}
    duplicates: list[Problem] = []
    budget = MAX_SPEC_NODES
    stack: list[tuple[yaml.Node, KeyPath]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        budget -= 1
        if budget < 0:
            return marks, duplicates, False
        marks.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen and key != "<<":
                    # safe_load would keep the last value silently; a half-edited spec often has two.
                    duplicates.append(Problem((*path, key), "each key once", f"a second `{key}:` "
                                              f"(the first is on line {seen[key]})",
                                              "remove or merge one of them", line))
                seen.setdefault(key, line)
                marks.setdefault((*path, key), line)
                stack.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, index)) for index, item in enumerate(node.value))
    return marks, duplicates, True


def _check_size(source: str, text: str) -> None:
    """Refuse a spec too deep or with too many nodes from the event stream, before composing it."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_SPEC_DEPTH:
                raise SpecError(source, [Problem((), f"YAML nested at most {MAX_SPEC_DEPTH} levels deep",
                                                 "deeper nesting", "a sweep spec needs only a handful of levels",
                                                 event.start_mark.line + 1)])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            nodes += 1
            if nodes > MAX_SPEC_NODES:
                raise SpecError(source, [Problem((), f"at most {MAX_SPEC_NODES} YAML nodes", "more",
                                                 "a sweep spec has a few hundred")])


def load_yaml(path: str | os.PathLike[str]) -> tuple[Any, dict[KeyPath, int]]:
    """Safely load a YAML file and the line of every key path; raise SpecError on bad YAML."""
    data, marks, duplicates = _load(path)
    if duplicates:
        raise SpecError(str(path), duplicates)
    return data, marks


def _read(path: str | os.PathLike[str]) -> str:
    """The text of a YAML file, within the size limit and as UTF-8; SpecError otherwise."""
    source = str(path)
    try:
        # Check the file type before opening: opening a FIFO blocks until a writer comes.
        kind = _file_kind(os.stat(path).st_mode)
        if kind != "a regular file":
            raise SpecError(source, [Problem((), "a regular YAML file", kind)])
        with open(path, "rb") as file:
            # Read one byte past the limit rather than trusting the size: a FIFO or /dev/zero has none.
            raw = file.read(MAX_SPEC_BYTES + 1)
    except OSError as error:
        raise SpecError(source, [Problem((), "a readable YAML file", error.strerror or str(error))]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(source, [Problem((), f"a spec of at most {MAX_SPEC_BYTES} bytes",
                                         f"more than {MAX_SPEC_BYTES} bytes",
                                         "a sweep spec is a short text file")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(source, [Problem((), "UTF-8 text", "binary data")]) from None


def _load(path: str | os.PathLike[str]) -> tuple[Any, dict[KeyPath, int], list[Problem]]:
    """Like :func:`load_yaml`, but keys given twice come back as problems to report with the rest."""
    return parse_yaml_text(str(path), _read(path))


def parse_yaml_text(source: str, text: str) -> tuple[Any, dict[KeyPath, int], list[Problem]]:
    """YAML text parsed with the spec loader's limits (size, depth, aliases, safe tags only);
    the line of every key path and the keys given twice come back beside the data."""
    try:
        _check_size(source, text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        marks: dict[KeyPath, int] = {}
        duplicates: list[Problem] = []
        if node is not None:
            marks, duplicates, within_budget = _line_marks(node)
            if not within_budget:
                raise SpecError(source, [Problem((), f"at most {MAX_SPEC_NODES} YAML nodes",
                                                 "more (aliases expanding without bound?)",
                                                 "write the spec out without nested aliases")])
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        reason = " ".join(str(part) for part in (error.context, error.problem) if part)
        if "could not determine a constructor" in reason:
            reason += "; YAML tags that build Python objects are never loaded"
        raise SpecError(source, [Problem((), "valid YAML", reason, line=line)]) from None
    except yaml.YAMLError as error:
        raise SpecError(source, [Problem((), "valid YAML", str(error))]) from None
    except RecursionError:  # Not expected past _check_size; kept so no input gives a traceback.
        raise SpecError(source, [Problem((), f"YAML nested at most {MAX_SPEC_DEPTH} levels deep",
                                         "deeper nesting", "a sweep spec needs only a handful of levels")]) from None
    return data, marks, duplicates


def read_text(path: str | os.PathLike[str]) -> str:
    """A YAML file's text, read within the spec loader's limits."""
    return _read(path)


SPEC_DIR_RECORD = "#% spec_dir: "


def spec_dir_of(path: str | os.PathLike[str], text: str) -> Path:
    """The folder a spec's relative paths and modules are relative to: its own, or, for the copy
    a run directory keeps, the original spec's (recorded in a ``#% spec_dir:`` line)."""
    for line in text.splitlines():
        if line.startswith(SPEC_DIR_RECORD):
            return Path(line[len(SPEC_DIR_RECORD):].strip())
    return Path(path).resolve().parent


def _file_kind(mode: int) -> str:
    import stat

    for test, kind in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def parse_spec(path: str | os.PathLike[str], overrides: Mapping[KeyPath, Any] | None = None) -> SweepSpec:
    """Load, override and validate a spec file; raise SpecError listing every problem."""
    from finesweep.search.user_code import add_import_paths

    text = _read(path)
    base_dir = spec_dir_of(path, text)
    add_import_paths(base_dir)
    data, marks, duplicates = parse_yaml_text(str(path), text)
    if not isinstance(data, dict):
        raise SpecError(str(path), [Problem((), "a mapping of spec keys", _describe(data), line=1)])
    for section in ("strategy", "scheduler"):
        if isinstance(data.get(section), str):  # `strategy: global` is short for {name: global}
            data[section] = {"name": data[section]}
    for key_path, value in (overrides or {}).items():
        target = data
        for key in key_path[:-1]:
            if target.get(key) is None:
                target[key] = {}
            target = target[key]
            if not isinstance(target, dict):
                break  # Keep the malformed section as written, so validation reports it.
        else:
            target[key_path[-1]] = value
            marks[key_path] = 0  # Rendered without a line: the value came from the command line.
    checker = SpecChecker(str(path), marks, base_dir)
    checker.problems.extend(duplicates)
    return checker.spec(data)


# --------------------------------------------------------------------------- validation


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return _clip(f"{value!r} (a string)")
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{value} (a boolean)"
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__} {_clip(str(value))}"
    return _clip(repr(value))


def _bound(value: float) -> str:
    # `:g` keeps 6 digits: an integer bound such as 2**31 - 1 would read 2.14748e+09.
    return str(value) if isinstance(value, int) else f"{value:g}"


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _close(word: Any, options: Sequence[str]) -> str:
    """A "did you mean" hint, or nothing: for messages whose `expected` already lists the options."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else ""


def _suggest(word: Any, options: Sequence[str]) -> str:
    """A "did you mean" hint, else the valid options."""
    if not options:
        return ""
    return _close(word, options) or f"valid: {', '.join(map(str, options))}"


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    # An int is always finite; math.isfinite would overflow on one too large for a float.
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _number_text_hint(text: str) -> str:
    """Why a number-like string is a string, and how to write it as a number."""
    text = text.strip()
    if _is_number(yaml.safe_load(text)):
        return "a quoted number is a string: remove the quotes"
    mantissa, exponent = re.split("[eE]", text)
    sign = mantissa[0] if mantissa[0] in "+-" else ""
    mantissa = mantissa.lstrip("+-")
    if mantissa.startswith("."):
        mantissa = "0" + mantissa
    if "." not in mantissa:
        mantissa += ".0"
    if exponent[0] not in "+-":
        exponent = "+" + exponent
    return (f"PyYAML reads `{text}` as a string (YAML 1.1 wants a dot in the mantissa and a sign "
            f"in the exponent): write {sign}{mantissa}e{exponent}")


def _can_take(param: IntParam | CategoricalParam, value: Any) -> bool:
    if isinstance(param, CategoricalParam):
        return value in param.choices
    # Arithmetic, not a list of the grid: an int range can span billions of values.
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return (_is_number(value) and whole and param.low <= value <= param.high
            and (int(value) - param.low) % param.step == 0)


def _describe_values(param: IntParam | CategoricalParam) -> str:
    if isinstance(param, CategoricalParam):
        return ", ".join(map(repr, param.choices[:10])) + (", ..." if len(param.choices) > 10 else "")
    step = f" in steps of {param.step}" if param.step != 1 else ""
    return f"an integer from {param.low} to {param.high}{step}"


@dataclass(frozen=True)
class Target:
    """Where a spec value goes: argument ``argument`` of ``cls`` (in ``section``), or inside it at
    ``nested`` (``init_args``, name, ...) when that argument is itself a class."""

    cls: type
    argument: str
    nested: tuple[str, ...] = ()
    section: str = "model"
    # The argument's fixed value, into which a nested value is put for checking.
    fixed_whole: Any = None

    @property
    def annotation(self) -> Any:
        return components.class_arguments(self.cls)[self.argument].annotation

    @property
    def kind(self) -> str | None:
        return None if self.nested else sc.base_kind(self.annotation)

    @property
    def limits(self) -> components.Range | None:
        return None if self.nested else components.bounds(self.annotation)

    @property
    def choices(self) -> tuple[str, ...]:
        import typing

        hint = self.annotation
        if typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        return tuple(typing.get_args(hint)) if typing.get_origin(hint) is typing.Literal else ()


def _set_in(tree: dict[str, Any], path: KeyPath, value: Any) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


class SpecChecker:
    def __init__(self, source: str, marks: Mapping[KeyPath, int], base_dir: Path | None = None) -> None:
        self.source = source
        self.marks = marks
        self.problems: list[Problem] = []
        # Relative paths are relative to the spec's own folder, wherever the command runs.
        self.base_dir = base_dir or Path(source).resolve().parent
        self.resolved_paths: dict[KeyPath, Any] = {}

    # ---- helpers

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
            self.problem(path, "a mapping", _describe(value))
            return {}
        for key in value:
            if key not in allowed:
                expected = f"one of the keys {', '.join(allowed)}" if allowed else "no keys here"
                self.problem((*path, key), expected, f"unknown key {key!r}", _close(key, allowed))
        return {k: v for k, v in value.items() if k in allowed}

    def number(self, value: Any, path: KeyPath, *, integer: bool = False, low: float | None = None,
               high: float | None = None, low_open: bool = False) -> float | int | None:
        kind = "an integer" if integer else "a number"
        if isinstance(value, str) and _NUMBER_LIKE.match(value.strip()):
            self.problem(path, kind, _describe(value), _number_text_hint(value))
            return None
        if not _is_number(value) or (integer and isinstance(value, float) and not value.is_integer()):
            self.problem(path, kind, _describe(value))
            return None
        if integer:
            value = int(value)
            if abs(value) > MAX_INTEGER:
                self.problem(path, "an integer of at most 2**53 in size", _describe(value),
                             "Optuna stores numbers as floats, which lose larger integers")
                return None
        if low is not None and (value <= low if low_open else value < low):
            self.problem(path, f"{kind} {'>' if low_open else '>='} {_bound(low)}", repr(value))
            return None
        if high is not None and value > high:
            self.problem(path, f"{kind} <= {_bound(high)}", repr(value))
            return None
        return value

    def string(self, value: Any, path: KeyPath, choices: Sequence[str] | None = None) -> str | None:
        if not isinstance(value, str) or not value:
            expected = f"one of {', '.join(choices)}" if choices else "a non-empty string"
            self.problem(path, expected, _describe(value))
            return None
        if choices is not None and value not in choices:
            self.problem(path, f"one of {', '.join(choices)}", repr(value), _close(value, choices))
            return None
        return value

    def boolean(self, value: Any, path: KeyPath) -> bool:
        if not isinstance(value, bool):
            self.problem(path, "true or false", _describe(value))
            return False
        return value

    def argument_value(self, target: Target, value: Any, path: KeyPath) -> bool:
        """Check one value for ``target`` against its class's signature: the type hint through
        jsonargparse, the bounds of a :class:`~finesweep.models.components.Range`; one problem."""
        kind, limits = target.kind, target.limits
        if kind in ("int", "float") and not isinstance(value, bool) and (
                _is_number(value) or (isinstance(value, str) and _NUMBER_LIKE.match(value.strip()))):
            low = limits.low if limits else None
            high = limits.high if limits else None
            return self.number(value, path, integer=kind == "int", low=low, high=high) is not None
        if kind == "names" and target.choices:
            return self.string(value, path, target.choices) is not None
        if kind == "bool" and not target.nested:
            if isinstance(value, bool):
                return True  # False is a value like any other: it must not read as "invalid"
            self.boolean(value, path)
            return False
        whole = value
        if target.nested:
            whole = components.nested_set(target.fixed_whole or {}, target.nested, value)
        reason = components.check_argument(target.cls, target.argument, whole)
        if reason is not None:
            self.problem(path, components.describe_type(target.annotation) if not target.nested
                         else f"a valid {format_path((target.argument, *target.nested))}",
                         _describe(value), reason if target.nested or "Expected" not in reason else "")
            return False
        return True

    # ---- sections

    def spec(self, data: dict[str, Any]) -> SweepSpec:
        data = self.mapping(data, (), TOP_LEVEL_KEYS)
        for required in ("name", "metric", "space"):
            if required not in data:
                self.problem((required,), f"a `{required}:` entry", "none")
        if "task" not in data and "model" not in data:
            self.problem(("model",), "a `model:` entry ({class_path, init_args}) or a built-in `task:`", "none",
                         "built-in tasks: " + ", ".join(sorted(TASKS)))
        name = data.get("name")
        if "name" in data and (not isinstance(name, str) or not NAME_PATTERN.fullmatch(name)):
            self.problem(("name",), "a name of letters, digits, '_', '-', '.'", _describe(name),
                         "it names the run directory runs/<name>")
        elif isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
            self.problem(("name",), f"a name of at most {MAX_NAME_LENGTH} characters",
                         f"{len(name)} characters", "it names the run directory runs/<name>")
        if data.get("description") is not None and not isinstance(data["description"], str):
            self.problem(("description",), "a string", _describe(data["description"]))
        task = None
        if "task" in data and self.string(data["task"], ("task",), sorted(TASKS)):
            task = TASKS[data["task"]]
            if "model" in data:
                self.problem(("model",), "either `task:` or `model:`", "both",
                             "`task:` names a built-in model and its data; drop it to sweep your own model")
                task = None  # The rest is checked as the spec of the model named, once.
        # A `task:` that names no task is reported alone, not again as missing model and data.
        named_task = "task" in data and "model" not in data
        model, model_cls = self.component("model", task.model if task else None, data.get("model"), named_task)
        data_section, data_cls = self.component("data", task.data if task else None, data.get("data"), named_task)
        trainer = self.trainer(data.get("trainer"))
        metric, mode = self.metric(model, data.get("metric"), data.get("mode"), "metric" in data)
        space, targets = self.space(task, model_cls, data_cls, model, data_section, data.get("space"),
                                    "space" in data)
        self.required_arguments(model, model_cls, data_section, data_cls, targets, task)
        if data_cls is not None and not self.problems:
            self.data_loads(data_section, space, targets)
        strategy = self.strategy(data.get("strategy"), space)
        scheduler = self.scheduler(data.get("scheduler"))
        budget = self.budget(data.get("budget"))
        resources = self.resources(data.get("resources"))
        storage = self.storage(data.get("storage"))
        if storage is not None:
            data["storage"] = storage  # Absolute from here on, in the run's spec.yaml too.
        max_failures = 0
        if data.get("max_failures") is not None:
            max_failures = self.number(data["max_failures"], ("max_failures",), integer=True, low=0) or 0
        keep_best = self.checkpoints(data.get("checkpoints"))
        if self.problems:
            raise SpecError(self.source, self.problems)
        for key_path, value in self.resolved_paths.items():
            _set_in(data, key_path, value)
        return SweepSpec(
            name=name, task=task, model=model, data=data_section, trainer=trainer, metric=metric, mode=mode,
            space=space, strategy=strategy, scheduler=scheduler, budget=budget, resources=resources,
            storage=storage, max_failures=int(max_failures), source=self.source, raw=data,
            keep_best_checkpoints=keep_best, targets=targets, base_dir=str(self.base_dir),
        )

    def checkpoints(self, value: Any) -> int | None:
        entry = self.mapping(value, ("checkpoints",), ["keep_best"])
        if "keep_best" not in entry:
            return DEFAULT_KEEP_BEST
        if entry["keep_best"] is None:
            return None
        return self.number(entry["keep_best"], ("checkpoints", "keep_best"), integer=True, low=1)

    def component(self, section: str, alias_class: str | None, value: Any,
                  named_task: bool = False) -> tuple[Component, type | None]:
        """The ``model:`` or ``data:`` section: a class path and fixed ``init_args``, or, under a
        built-in ``task:``, the task's class with ``data:`` holding its settings directly."""
        if alias_class is not None:
            if isinstance(value, dict) and "class_path" in value:
                self.problem((section, "class_path"), f"the task's {section} settings",
                             "a class path beside `task:`", "drop `task:` to name your own classes")
                return Component(alias_class), None
            cls = self.import_class(alias_class, (section,))
            init_args = self.mapping(value, (section,), sc.argument_names(cls) if cls else [])
            return Component(alias_class, self.init_arguments(cls, init_args, (section,))), cls
        if named_task and not (isinstance(value, dict) and "class_path" in value):
            return Component(""), None
        if value is None:
            if section == "data":
                self.problem(("data",), "a `data:` entry ({class_path, init_args}) naming your "
                             "LightningDataModule", "none")
            return Component(""), None
        entry = self.mapping(value, (section,), ["class_path", "init_args"])
        if not isinstance(value, dict):
            return Component(""), None
        class_path = self.string(entry.get("class_path"), (section, "class_path"))
        if class_path is None:
            return Component(""), None
        cls = self.import_class(class_path, (section, "class_path"))
        if cls is not None:
            expected = sc.base_classes()[section]
            if not issubclass(cls, expected):
                bases = ", ".join(b.__name__ for b in cls.__mro__[1:3])
                self.problem((section, "class_path"), f"a {expected[0].__name__} subclass",
                             f"{class_path} (a subclass of {bases})")
                cls = None
        init_args = entry.get("init_args")
        if init_args is not None and not isinstance(init_args, dict):
            self.problem((section, "init_args"), "a mapping of arguments", _describe(init_args))
            init_args = None
        init_args = self.mapping(init_args, (section, "init_args"), sc.argument_names(cls)) if cls else {}
        return Component(class_path, self.init_arguments(cls, init_args, (section, "init_args"))), cls

    def import_class(self, class_path: str, path: KeyPath) -> type | None:
        try:
            return components.import_class(class_path)
        except components.ComponentError as error:
            self.problem(path, "an importable class path (package.module.ClassName)", repr(class_path), str(error))
            return None

    def init_arguments(self, cls: type | None, given: Mapping[str, Any], path: KeyPath) -> dict[str, Any]:
        """The fixed arguments of ``cls`` that pass its checks, paths made absolute."""
        if cls is None:
            return {}
        valid = {}
        for name, value in given.items():
            target = Target(cls, name, ())
            if self.argument_value(target, value, (*path, name)):
                valid[name] = self.resolve_path(target, value, (*path, name))
        return valid

    def resolve_path(self, target: Target, value: Any, path: KeyPath) -> Any:
        """A relative path in a path argument, made absolute against the spec's folder, so a run
        started from any working directory (and its exports) finds the same file."""
        if target.nested or not sc.is_path_argument(target.argument, target.annotation):
            return value
        resolved = sc.resolve_relative(value, self.base_dir)
        if resolved != value:
            self.resolved_paths[path] = resolved
        return resolved

    def trainer(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(("trainer",), "a mapping of Trainer options", _describe(value))
            return {}
        from finesweep.models.training import RESERVED_TRAINER_OPTIONS

        cls = sc.trainer_class()
        allowed = [n for n in sc.argument_names(cls) if n not in RESERVED_TRAINER_OPTIONS]
        options = {}
        for name, option in value.items():
            if name in RESERVED_TRAINER_OPTIONS:
                self.problem(("trainer", name), "a Trainer option finesweep does not set itself",
                             repr(name), RESERVED_TRAINER_OPTIONS[name])
            elif name not in allowed:
                self.problem(("trainer", name), "a pytorch_lightning.Trainer option",
                             f"unknown key {name!r}", _suggest(name, allowed))
            elif self.argument_value(Target(cls, name, ()), option, ("trainer", name)):
                options[name] = option
        return options

    def metric(self, model: Component, metric: Any, mode: Any, given: bool) -> tuple[str, str]:
        if mode is not None:
            mode = self.string(mode, ("mode",), ["min", "max"])
        if not given:
            return str(metric), mode or "max"
        if not isinstance(metric, str) or not metric:
            self.problem(("metric",), "the name of a value the model logs with self.log", _describe(metric))
            return str(metric), mode or "max"
        known = sc.known_metrics(model)
        if known is None:
            # The model's own metric: it is checked against what the module logs in the first trial.
            if mode is None:
                mode = sc.guess_mode(metric)
                if mode is None:
                    self.problem(("mode",), f"min or max: whether {metric!r} improves down or up", "none",
                                 "add `mode: min` (losses, errors) or `mode: max` (accuracy, F1)")
            return metric, mode or "max"
        if metric not in known:
            self.problem(("metric",), f"a metric that the model reports: {', '.join(known)}", _describe(metric),
                         _close(metric, list(known)))
            return str(metric), mode or "max"
        natural = known[metric]
        if mode is not None and mode != natural:
            self.problem(("mode",), f"{natural} ({metric} improves that way)", repr(mode),
                         "drop `mode:`; it follows from the metric")
        return metric, natural

    def target(self, key: str, task: TaskAlias | None, classes: Mapping[str, type | None],
               fixed: Mapping[str, Component], path: KeyPath) -> Target | None:
        """Where the space entry ``key`` goes; None (and a problem) when nowhere."""
        from finesweep.models.training import RESERVED_TRAINER_OPTIONS

        parts = sc.split_target(str(key))
        if len(parts) == 1:
            # A bare name: the model's argument, else the data's (how built-in task specs name them).
            for section in ("model", "data"):
                cls = classes[section]
                if cls is not None and parts[0] in components.class_arguments(cls):
                    return Target(cls, parts[0], (), section, fixed[section].init_args.get(parts[0]))
            if all(classes[s] is None for s in ("model", "data")):
                return None
            names = [*sc.argument_names(classes["model"]), *sc.argument_names(classes["data"])]
            owner = f"task {task.name!r}" if task is not None else "the model or its data"
            self.problem(path, f"a setting of {owner}", f"unknown parameter {key!r}",
                         _suggest(key, names) if task is not None else _close(key, names)
                         or "name it model.ARG, data.ARG or trainer.OPTION")
            return None
        section, argument, *nested = parts
        if section not in sc.SECTIONS:
            self.problem(path, "model.ARG, data.ARG or trainer.OPTION", f"{key!r}", _close(section, sc.SECTIONS))
            return None
        cls = sc.trainer_class() if section == "trainer" else classes[section]
        if cls is None:
            return None
        if section == "trainer" and argument in RESERVED_TRAINER_OPTIONS:
            self.problem(path, "a Trainer option finesweep does not set itself", repr(argument),
                         RESERVED_TRAINER_OPTIONS[argument])
            return None
        names = sc.argument_names(cls)
        if argument not in names:
            self.problem(path, f"an argument of {cls.__name__}", f"unknown parameter {argument!r}",
                         _suggest(argument, names))
            return None
        if nested and nested[0] != "init_args":
            self.problem(path, f"{section}.{argument}.init_args.NAME (an argument of the class it names)",
                         repr(key))
            return None
        whole = fixed[section].init_args.get(argument) if section != "trainer" else None
        return Target(cls, argument, tuple(nested), section, whole)

    def space(self, task: TaskAlias | None, model_cls: type | None, data_cls: type | None, model: Component,
              data_section: Component, value: Any, given: bool) -> tuple[SearchSpace, dict[str, tuple[str, ...]]]:
        if value is None and not given:
            return SearchSpace(params=()), {}  # Reported as a missing `space:` entry.
        if not isinstance(value, dict) or not value:
            self.problem(("space",), "a non-empty mapping of parameter names", _describe(value))
            return SearchSpace(params=()), {}
        classes = {"model": model_cls, "data": data_cls}
        fixed_components = {"model": model, "data": data_section}
        params: list[Param] = []
        fixed: dict[str, Any] = {}
        targets: dict[str, tuple[str, ...]] = {}
        # Parameters declared but rejected: conditions on them are not reported a second time.
        rejected: set[str] = set()
        for name, entry in value.items():
            path = ("space", name)
            target = self.target(name, task, classes, fixed_components, path)
            if target is None and (model_cls is not None or data_cls is not None):
                rejected.add(str(name))
                continue
            if target is not None:
                targets[str(name)] = (target.section, target.argument, *target.nested)
            if isinstance(entry, dict) and "type" not in entry:
                if set(entry) == {"value"}:
                    entry = entry["value"]
                    path = (*path, "value")
                    if isinstance(entry, (dict, list)):
                        self.problem(path, "a plain value", _describe(entry))
                        rejected.add(name)
                        continue
                else:
                    self.problem(path, "a fixed value or a mapping with `type:` (float, int, categorical)",
                                 _describe(entry), "add `type: float` (or int / categorical)")
                    rejected.add(name)
                    continue
            if isinstance(entry, dict):
                param = self.param(name, entry, target, path)
                if param is not None:
                    params.append(param)
                else:
                    rejected.add(name)
            elif isinstance(entry, list):
                self.problem(path, "a fixed value or a mapping with `type:`", _describe(entry),
                             "to search a list, write {type: categorical, choices: [...]}")
            elif target is None or self.argument_value(target, entry, path):
                fixed[name] = self.resolve_path(target, entry, path) if target is not None else entry
        ordered = self.order_by_conditions(params, rejected=rejected, fixed=fixed)
        return SearchSpace(params=tuple(ordered), fixed=fixed), targets

    def required_arguments(self, model: Component, model_cls: type | None, data_section: Component,
                           data_cls: type | None, targets: Mapping[str, tuple[str, ...]],
                           task: TaskAlias | None) -> None:
        """A required ``__init__`` argument neither fixed nor searched nor linked is a problem now,
        not a TypeError in every trial."""
        for section, component, cls in (("model", model, model_cls), ("data", data_section, data_cls)):
            if cls is None:
                continue
            given = {*component.init_args, *(t[1] for t in targets.values() if t[0] == section)}
            if task is not None and section == "model":
                given |= set(task.links.values())
            for argument in sc.required_missing(cls, sorted(given)):
                where = (section,) if task is not None else (section, "init_args")
                self.problem((*where, argument), f"a value for {cls.__name__}'s required argument {argument!r}",
                             "none", f"fix it under {format_path(where)} or search it as {section}.{argument}")

    def data_loads(self, data_section: Component, space: SearchSpace, targets: Mapping[str, tuple[str, ...]]) -> None:
        """Build the DataModule once (its ``__init__`` is cheap by Lightning's convention): a
        missing file or data source is reported now, before any worker starts."""
        init_args = dict(data_section.init_args)
        for name, value in space.fixed.items():
            if targets[name][0] == "data":
                init_args = components.nested_set(init_args, targets[name][1:], value)
        for param in space.params:
            if targets[param.name][0] == "data":
                init_args = components.nested_set(init_args, targets[param.name][1:], sc.probe_values(param)[0])
        reason = sc.instantiation_error(data_section, init_args)
        if reason is not None:
            self.problem(("data",), "data the DataModule can load", reason)

    def param(self, name: str, entry: dict[str, Any], target: Target | None, path: KeyPath) -> Param | None:
        kind = self.string(entry["type"], (*path, "type"), list(PARAM_KEYS))
        if kind is None:
            return None
        entry = self.mapping(entry, path, PARAM_KEYS[kind])
        field_kind = target.kind if target is not None else None
        limits = target.limits if target is not None else None
        when = self.conditions(entry.get("when"), (*path, "when"))
        if kind == "categorical":
            return self.categorical(name, entry, target, path, when)
        if field_kind in ("names", "bool"):
            self.problem((*path, "type"), "categorical (this setting takes names)", repr(kind))
            return None
        integer = kind == "int"
        if integer and field_kind == "float":
            pass  # An int range for a float setting is fine (e.g. whole-number epochs of warm-up).
        elif not integer and field_kind == "int":
            self.problem((*path, "type"), "int (this setting takes whole numbers)", repr(kind))
            return None
        bounds = {}
        for key in ("low", "high"):
            if key not in entry:
                self.problem((*path, key), f"a `{key}:` bound", "none")
            else:
                bounds[key] = self.number(entry[key], (*path, key), integer=integer,
                                          low=limits.low if limits else None,
                                          high=limits.high if limits else None)
        log = self.boolean(entry["log"], (*path, "log")) if "log" in entry else False
        step = None
        if entry.get("step") is not None:
            step = self.number(entry["step"], (*path, "step"), integer=integer, low=0, low_open=True)
            if step is None:
                return None
            if log and not integer:
                self.problem((*path, "step"), "no step on a log-scale float", repr(step),
                             "Optuna samples log floats continuously; drop `step` or `log`")
                return None
            if log and integer and step != 1:
                self.problem((*path, "step"), "step 1 on a log-scale int", repr(step))
                return None
        low, high = bounds.get("low"), bounds.get("high")
        if low is None or high is None:
            return None
        if low > high:
            self.problem(path, "low <= high", f"low={low!r}, high={high!r}", "swap the bounds")
            return None
        if log and low <= 0:
            self.problem((*path, "low"), "low > 0 on a log scale", repr(low),
                         "a log-scale range cannot include zero or negatives")
            return None
        if integer:
            return IntParam(name, int(low), int(high), log=log, step=int(step or 1), when=when)
        return FloatParam(name, float(low), float(high), log=log, step=step, when=when)

    def categorical(self, name: str, entry: dict[str, Any], target: Target | None, path: KeyPath,
                    when: tuple[Condition, ...]) -> CategoricalParam | None:
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            self.problem((*path, "choices"), "a non-empty list of choices", _describe(choices))
            return None
        if len(choices) > MAX_CHOICES:
            self.problem((*path, "choices"), f"at most {MAX_CHOICES} choices", f"{len(choices)}",
                         "use an int or float range for a numeric setting")
            return None
        ok = True
        for index, choice in enumerate(choices):
            if isinstance(choice, (dict, list)):
                self.problem((*path, "choices", index), "a plain value", _describe(choice))
                ok = False
            elif target is not None and not self.argument_value(target, choice,
                                                                 (*path, "choices", index)):
                ok = False
        if ok:
            # Equal, not identical: Optuna finds a choice by ==, so 1 and 1.0 (or 1 and true) collide.
            seen: list[Any] = []
            repeated: list[Any] = []
            for choice in choices:
                (repeated if choice in seen else seen).append(choice)
            if repeated:
                self.problem((*path, "choices"), "distinct choices",
                             f"{', '.join(map(repr, repeated))} again", "remove the repeated ones")
                ok = False
        return CategoricalParam(name, tuple(choices), when=when) if ok else None

    def conditions(self, value: Any, path: KeyPath) -> tuple[Condition, ...]:
        if value is None:
            return ()
        if not isinstance(value, dict) or not value:
            self.problem(path, "a mapping {parameter: value or [values]}", _describe(value))
            return ()
        result = []
        for parameter, expected in value.items():
            values = tuple(expected) if isinstance(expected, list) else (expected,)
            if not values:
                self.problem((*path, parameter), "at least one value", "[]",
                             "with no values the condition never holds and the parameter is never searched")
                continue
            result.append(Condition(str(parameter), values))
        return tuple(result)

    def order_by_conditions(self, params: list[Param], *, rejected: Set[str] = frozenset(),
                            fixed: Mapping[str, Any] | None = None) -> list[Param]:
        """Sampling order: a condition's parameter before the parameters that depend on it.
        ``rejected`` names parameters whose own problems are already reported."""
        by_name = {p.name: p for p in params}
        for param in params:
            for condition in param.when:
                path = ("space", param.name, "when", condition.parameter)
                other = by_name.get(condition.parameter)
                if condition.parameter == param.name:
                    self.problem(path, "another parameter", "a condition on itself")
                elif condition.parameter in rejected:
                    pass  # Its own definition is wrong and already reported.
                elif other is None and condition.parameter in (fixed or {}):
                    self.problem(path, "a searched parameter of this space",
                                 f"{condition.parameter!r}, which is fixed to "
                                 f"{_describe(fixed[condition.parameter])}",
                                 "a condition on a fixed value always or never holds")
                elif other is None:
                    self.problem(path, "a searched parameter of this space",
                                 f"{condition.parameter!r}, which is not searched here",
                                 _suggest(condition.parameter, list(by_name)))
                elif isinstance(other, FloatParam):
                    self.problem(path, "a condition on a categorical or int parameter",
                                 f"a condition on the float {other.name!r}",
                                 "a sampled float almost never equals a given value")
                else:
                    for expected in condition.values:
                        if not _can_take(other, expected):
                            self.problem(path, f"a value {other.name} can take: {_describe_values(other)}",
                                         repr(expected))
        ordered: list[Param] = []
        placed: set[str] = set()
        pending = list(params)

        def waits_for(param: Param) -> list[str]:
            return [c.parameter for c in param.when
                    if c.parameter in by_name and c.parameter != param.name and c.parameter not in placed]

        while pending:
            ready = [p for p in pending if not waits_for(p)]
            if not ready:
                # Every pending parameter waits for another pending one: following those links
                # from any of them must come back round; report that loop, then carry on.
                chain = [pending[0].name]
                while (step := waits_for(by_name[chain[-1]])[0]) not in chain:
                    chain.append(step)
                cycle = [*chain[chain.index(step):], step]
                self.problem(("space", cycle[0], "when", cycle[1]), "conditions without cycles",
                             f"a cycle {' -> '.join(cycle)}", "one of them must not depend on the others")
                ready = [by_name[name] for name in cycle[:-1]]
            for param in ready:
                ordered.append(param)
                placed.add(param.name)
                pending.remove(param)
        return ordered

    def strategy(self, value: Any, space: SearchSpace) -> StrategySpec:
        from finesweep.search.strategies import STRATEGIES, check_options

        if isinstance(value, str):
            value = {"name": value}
        entry = self.mapping(value, ("strategy",), ["name", "options", "seed"])
        name = entry.get("name", "global")
        if self.string(name, ("strategy", "name"), sorted(STRATEGIES)) is None:
            return StrategySpec()
        options = self.mapping(entry.get("options"), ("strategy", "options"),
                               list(STRATEGIES[name].options))
        if isinstance(options.get("start_from"), str):
            # A file is read here, once: the sampler receives the point, never a path.
            point = self.start_point(options["start_from"])
            if point is None:
                return StrategySpec(name=name)
            options = {**options, "start_from": point}
        for key, expected, found in check_options(name, options, space):
            self.problem(("strategy", "options", key) if key else ("strategy", "name"), expected, found)
        seed = entry.get("seed")
        if seed is not None:
            seed = self.number(seed, ("strategy", "seed"), integer=True, low=0, high=MAX_SEED)
        return StrategySpec(name=name, options=options, seed=seed)

    def start_point(self, value: str) -> dict[str, Any] | None:
        """The searched values of an exported trial (best.yaml's ``#% params``), the file's path
        taken relative to the spec's folder; None (and a problem) when it has none."""
        from finesweep.search.export import read_record

        path = Path(sc.resolve_relative(value, self.base_dir))
        at = ("strategy", "options", "start_from")
        try:
            params = read_record(path).get("params")
        except SpecError as error:
            self.problem(at, "a readable best.yaml", "; ".join(p.found for p in error.problems))
            return None
        if not isinstance(params, dict):
            self.problem(at, "a best.yaml with finesweep's record of the trial's params (launch.py export "
                         "writes one)", f"{value!r} without one")
            return None
        return params

    def scheduler(self, value: Any) -> SchedulerSpec:
        from finesweep.search.schedulers import SCHEDULERS

        if isinstance(value, str):
            value = {"name": value}
        entry = self.mapping(value, ("scheduler",), ["name", "options"])
        name = entry.get("name", "asha")
        if self.string(name, ("scheduler", "name"), sorted(SCHEDULERS)) is None:
            return SchedulerSpec()
        known = SCHEDULERS[name]
        options = self.mapping(entry.get("options"), ("scheduler", "options"), list(known))
        for key, option_value in options.items():
            default = known[key]
            # Ray asserts reduction_factor > 1 (HyperBand divides by its logarithm).
            low = 2 if key == "reduction_factor" else 1 if isinstance(default, int) else 0
            self.number(option_value, ("scheduler", "options", key), integer=isinstance(default, int),
                        low=low)
        return SchedulerSpec(name=name, options=options)

    def budget(self, value: Any) -> BudgetSpec:
        entry = self.mapping(value, ("budget",), ["trials", "max_epochs", "time_limit_s", "trial_timeout_s"])
        defaults = BudgetSpec()
        trials = self.number(entry.get("trials", defaults.trials), ("budget", "trials"), integer=True, low=1)
        epochs = self.number(entry.get("max_epochs", defaults.max_epochs), ("budget", "max_epochs"),
                             integer=True, low=1)
        limit = entry.get("time_limit_s")
        if limit is not None:
            limit = self.number(limit, ("budget", "time_limit_s"), low=0, low_open=True)
        timeout = entry.get("trial_timeout_s")
        if timeout is not None:
            timeout = self.number(timeout, ("budget", "trial_timeout_s"), low=0, low_open=True)
        return BudgetSpec(trials=trials or 1, max_epochs=epochs or 1, time_limit_s=limit, trial_timeout_s=timeout)

    def resources(self, value: Any) -> ResourcesSpec:
        entry = self.mapping(value, ("resources",), ["cpus", "gpus", "concurrency", "memory_mb"])
        defaults = ResourcesSpec()
        cpus = self.number(entry.get("cpus", defaults.cpus), ("resources", "cpus"), low=0, low_open=True)
        gpus = self.number(entry.get("gpus", defaults.gpus), ("resources", "gpus"), low=0)
        if gpus is not None and gpus > 1 and not float(gpus).is_integer():
            self.problem(("resources", "gpus"), "a fraction below 1 or a whole number of GPUs",
                         repr(gpus), "Ray shares a GPU only in fractions of one device")
        concurrency = self.number(entry.get("concurrency", defaults.concurrency),
                                  ("resources", "concurrency"), integer=True, low=1)
        memory = entry.get("memory_mb")
        if memory is not None:
            memory = self.number(memory, ("resources", "memory_mb"), low=0, low_open=True)
        return ResourcesSpec(cpus=cpus or 1.0, gpus=gpus or 0.0, concurrency=concurrency or 1, memory_mb=memory)

    def storage(self, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or "://" not in value:
            self.problem(("storage",), "a database URL such as sqlite:///path/study.db or "
                         "postgresql://user@host/db", _describe(value))
            return None
        scheme = value.split("://", 1)[0].split("+", 1)[0]
        if scheme not in STORAGE_SCHEMES:
            self.problem(("storage",), f"a SQLAlchemy URL scheme ({', '.join(STORAGE_SCHEMES)})",
                         repr(scheme), _close(scheme, STORAGE_SCHEMES))
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
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(url).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        return str(error)
    except ImportError as error:
        return f"its driver is not installed ({error.name or error})"
    return None
