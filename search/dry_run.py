"""The dry run: before Ray starts, the sweep's model and data are built for a few sampled
configurations (every class choice at least once) and trained for one training and one
validation batch in the driver, with the spec's Trainer options and callbacks as a trial gets
them. A configuration that cannot train is then one located error in seconds, instead of the
same failure in every trial; a metric the module does not log is named with what it does log.

``sweep --no-dry-run`` (and ``resume --no-dry-run``) skips the whole step.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from finesweep.models.components import import_class, instantiate
from finesweep.models.run import TrainingRun
from finesweep.search.space import CategoricalParam, FloatParam, IntParam, Param, SearchSpace, is_active
from finesweep.search.spec.fields import FieldChecks
from finesweep.search.spec.loading import parse_yaml_text, read_text
from finesweep.search.spec.problems import KeyPath, SpecError, clip
from finesweep.search.trial import quiet_training_logs

if TYPE_CHECKING:
    from finesweep.search.spec import SweepSpec

CLASS_PATH = "class_path"


@dataclass(frozen=True)
class DryRunReport:
    configurations: int
    seconds: float
    # Each searched class (a categorical parameter whose key ends in class_path) -> its choices run.
    classes: Mapping[str, tuple[Any, ...]]
    data_summary: str | None = None

    def line(self) -> str:
        what = "setup, one training and one validation batch"
        plural = "s" if self.configurations != 1 else ""
        tried = "".join(f"; {name}: {', '.join(_short(c) for c in choices)}"
                        for name, choices in self.classes.items())
        return (f"finesweep: dry run passed in {self.seconds:.1f} s ({what}, {self.configurations} "
                f"configuration{plural}{tried}; `--no-dry-run` skips it)")


def class_choices(spec: SweepSpec) -> dict[str, tuple[Any, ...]]:
    """Searched parameters that choose a class (their key ends in ``class_path``), with their choices."""
    return {p.name: tuple(p.choices) for p in spec.space.params if isinstance(p, CategoricalParam)
            and (spec.targets.get(p.name, ())[-1:] == (CLASS_PATH,) or p.name.endswith(f".{CLASS_PATH}"))}


def _draw(param: Param, rng: random.Random) -> Any:
    if isinstance(param, CategoricalParam):
        return rng.choice(param.choices)
    if isinstance(param, IntParam):
        if param.log:
            value = round(math.exp(rng.uniform(math.log(param.low), math.log(param.high))))
            return min(param.high, param.low + (value - param.low) // param.step * param.step)
        return rng.randrange(param.low, param.high + 1, param.step)
    grid = param.grid_values() if isinstance(param, FloatParam) else None
    if grid:
        return grid[rng.randrange(len(grid))]
    if param.log:
        return math.exp(rng.uniform(math.log(param.low), math.log(param.high)))
    return rng.uniform(param.low, param.high)


def sample(space: SearchSpace, rng: random.Random, forced: Mapping[str, Any]) -> dict[str, Any]:
    """One configuration, define-by-run as a trial samples it: ``forced`` values where they are
    active, the rest drawn; inactive conditional parameters left out."""
    sampled: dict[str, Any] = {}
    for param in space.params:
        if is_active(param, sampled):
            sampled[param.name] = forced[param.name] if param.name in forced else _draw(param, rng)
    return sampled


def _with_conditions(space: SearchSpace, forced: dict[str, Any]) -> dict[str, Any]:
    """``forced`` plus, for each forced parameter, values that make its conditions hold."""
    changed = True
    while changed:
        changed = False
        for name in list(forced):
            for condition in space[name].when:
                if condition.parameter not in forced:
                    forced[condition.parameter] = condition.values[0]
                    changed = True
    return forced


def configurations(space: SearchSpace, classes: Mapping[str, tuple[Any, ...]], seed: int) -> list[dict[str, Any]]:
    """Sampled configurations that between them take every choice of every class parameter
    (with the parameters conditional on it sampled); one configuration when there are none."""
    rng = random.Random(seed)
    wanted = [(name, choice) for name, choices in classes.items() for choice in choices]
    chosen: list[dict[str, Any]] = []
    for _ in range(len(wanted) + 1):
        missing = [(name, choice) for name, choice in wanted
                   if not any(values.get(name) == choice for values in chosen)]
        if chosen and not missing:
            break
        forced: dict[str, Any] = {}
        for name, choice in missing:
            forced.setdefault(name, choice)
        chosen.append(sample(space, rng, _with_conditions(space, forced)))
    return chosen


def run_dry_run(spec: SweepSpec) -> DryRunReport:
    """Dry-run the sweep's configurations (see the module docstring); raise :class:`SpecError`
    locating the first failure at its spec key."""
    from finesweep.models.dry_run import DryRunFailure, dry_run  # torch and Lightning: seconds

    started = time.perf_counter()
    classes = class_choices(spec)
    chosen = configurations(spec.space, classes, spec.strategy.seed or 0)
    seed = spec.strategy.seed or 0
    runs = [TrainingRun.from_config(spec.training_config(values), max_epochs=1, seed=seed, metric=spec.metric,
                                    mode=spec.mode) for values in chosen]
    summary = None
    quiet_training_logs()
    for values, run in zip(chosen, runs, strict=True):
        try:
            result = dry_run(run, _watched(spec))
        except DryRunFailure as failure:
            raise _located(spec, values, run, failure.stage, failure.culprit, failure.error, chosen) from None
        summary = summary or result.data_summary
    picked = {name: tuple(dict.fromkeys(v[name] for v in chosen if name in v)) for name in classes}
    return DryRunReport(len(chosen), time.perf_counter() - started, picked, summary)


def _watched(spec: SweepSpec) -> list[tuple[KeyPath, str]]:
    """Every further name the sweep reads, with the spec key that names it."""
    names = [o.name for o in spec.objectives]
    return [*((("objectives", n), n) for n in names[1:]),
            *((("constraints", n), n) for n in spec.constraints if n not in names)]


def describe_data(spec: SweepSpec) -> str | None:
    """The DataModule's one-line account of its data (``summary()``, where it has one), built
    with the spec's fixed data arguments; None when it gives none or cannot build it here."""
    if not callable(getattr(import_class(spec.data.class_path), "summary", None)):
        return None
    try:
        data = instantiate(spec.data.class_path, spec.training_config({})["data"]["init_args"])
        return str(data.summary())
    except Exception as error:  # the trials will report it with their traceback
        return f"(no summary: {type(error).__name__}: {error})"


# ---- where a failure goes in the spec -----------------------------------------------------

def _config_path(spec: SweepSpec, target: tuple[str, ...]) -> KeyPath:
    section, *rest = target
    return ("trainer", *rest) if section == "trainer" else (section, "init_args", *rest)


def spec_key(spec: SweepSpec, path: KeyPath) -> KeyPath:
    """The spec key a config path came from: a searched or fixed `space:` entry whose value is at
    or above it, else the model/data/trainer section's own key (a task's settings sit directly
    under `model:`/`data:`)."""
    for name, target in spec.targets.items():
        at = _config_path(spec, target)
        if path[:len(at)] == at:
            return ("space", name)
    key = (path[0], *path[2:]) if spec.task is not None and path[1:2] == ("init_args",) else path
    below = sorted((name for name, target in spec.targets.items() if _config_path(spec, target)[:len(path)] == path),
                   key=lambda name: spec.targets[name][-1:] != (CLASS_PATH,))
    if below and not _written(spec.raw, key):
        return ("space", below[0])  # A class chosen by the space: its choice is the key to point at.
    if spec.task is not None and not _written(spec.raw, key[:1]):
        return ("task",)  # A built-in task's model, named by `task:` alone.
    return key


def _written(tree: Any, path: KeyPath) -> bool:
    for part in path:
        if isinstance(tree, Mapping) and part in tree:
            tree = tree[part]
        elif isinstance(tree, (list, tuple)) and isinstance(part, int) and part < len(tree):
            tree = tree[part]
        else:
            return False
    return True


def _leaves(tree: Any, path: KeyPath = ()) -> list[tuple[KeyPath, Any]]:
    if isinstance(tree, Mapping):
        return [leaf for key, value in tree.items() for leaf in _leaves(value, (*path, key))]
    if isinstance(tree, (list, tuple)):
        return [leaf for index, value in enumerate(tree) for leaf in _leaves(value, (*path, index))]
    return [(path, tree)]


def _named_in(value: Any, text: str) -> bool:
    """Whether the error message names ``value``: a string of a few characters (a path, a
    name) anywhere, a number as a whole token."""
    if isinstance(value, str):
        return len(value) >= 3 and value in text
    if isinstance(value, (int, float)) and not isinstance(value, bool) and len(repr(value)) >= 2:
        return re.search(rf"(?<![\w.]){re.escape(repr(value))}(?![\w.])", text) is not None
    return False


def _nodes(tree: Any, path: KeyPath = ()) -> list[KeyPath]:
    """The path of every entry of a mapping inside ``tree`` (leaves and inner ones)."""
    found: list[KeyPath] = []
    items = tree.items() if isinstance(tree, Mapping) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    for key, value in items:
        if isinstance(key, str):
            found.append((*path, key))
        found += _nodes(value, (*path, key))
    return found


def blamed_path(config: Mapping[str, Any], culprit: KeyPath, message: str) -> KeyPath:
    """Within the part that raised (``culprit``), the value the message names (a missing file's
    path, an argument's value), else the argument it names (jsonargparse's "Option 'widht' is not
    accepted", "required: encoder"); else a string value it names anywhere in the config (the path
    of a file another part tried to read); else the part itself."""
    leaves = [(path, value) for path, value in _leaves(config) if path[-1:] != (CLASS_PATH,)]
    inside = [(p, v) for p, v in leaves if p[:len(culprit)] == culprit and _named_in(v, message)]
    if inside:  # the longest value named is the most specific
        return max(inside, key=lambda pv: len(str(pv[1])))[0]
    keys = [p for p in _nodes(config) if p[:len(culprit)] == culprit and len(p[-1]) >= 3
            and p[-1] not in (CLASS_PATH, "init_args") and re.search(rf"\b{re.escape(p[-1])}\b", message)]
    if keys:  # the deepest argument named is the most specific
        return max(keys, key=len)
    anywhere = [(p, v) for p, v in leaves if isinstance(v, str) and _named_in(v, message)]
    return max(anywhere, key=lambda pv: len(str(pv[1])))[0] if anywhere else culprit


def _located(spec: SweepSpec, values: Mapping[str, Any], run: TrainingRun, stage: str, culprit: KeyPath,
             error: BaseException, chosen: list[dict[str, Any]]) -> SpecError:
    text = " ".join(str(error).split())
    reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
    config = {"model": dict(run.model), "data": dict(run.data), "trainer": dict(run.trainer)}
    if culprit == ("metric",) or culprit[:1] in (("objectives",), ("constraints",)):
        key: KeyPath = culprit if spec.raw.get("objectives") is None or culprit != ("metric",) else \
            ("objectives", spec.metric)
        expected = "a metric the module logs in validation (the dry run's batch logged none of that name)"
        reason = text
    else:
        key = spec_key(spec, blamed_path(config, culprit, text))
        expected = f"a configuration that trains (the dry run failed {stage})"
    shown = ", ".join(f"{name}={_short(value)}" for name, value in values.items())
    number = f"configuration {chosen.index(dict(values)) + 1} of {len(chosen)}"
    hint = f"dry run {number}: {shown}" if shown else f"dry run {number}"
    try:
        _, marks, _ = parse_yaml_text(spec.source, read_text(spec.source))
    except Exception:  # The spec was read once already; a line number is a nicety here.
        marks = {}
    checks = FieldChecks(spec.source, marks)
    checks.problem(key, expected, clip(reason, 400), f"{hint}; `--no-dry-run` skips the dry run")
    return SpecError(spec.source, checks.problems)


_CLASS_PATH_VALUE = re.compile(r"^[A-Za-z_][\w.]*\.[A-Z]\w*$")


def _short(value: Any) -> str:
    """A value as the message shows it: 4 digits of a float, a class path's class name."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and _CLASS_PATH_VALUE.match(value):
        return value.rsplit(".", 1)[-1]
    return str(value)
