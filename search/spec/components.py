"""The spec's model, data and trainer sections, checked against the classes they name.

A spec names a ``LightningModule`` and a ``LightningDataModule`` as LightningCLI does
(``{class_path, init_args}``), or a built-in task by its short name; Trainer options go under
``trainer:``. Every fixed and searched value is checked against the ``__init__`` signatures and
type hints through :mod:`finesweep.models.components` (jsonargparse, as LightningCLI checks
them), before Ray or any trial starts. The rules here only say where a value goes and what
to report; the type checking itself is jsonargparse's. :class:`ComponentChecks` is the part of
the spec checker that does this; an exported config (``best.yaml``) is checked by it alone.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finesweep.models import components
from finesweep.models.tasks import KNOWN_METRICS, TaskAlias
from finesweep.search.spec import classes as spec_classes
from finesweep.search.spec import paths as spec_paths
from finesweep.search.spec.classes import Target
from finesweep.search.spec.fields import FieldChecks
from finesweep.search.spec.problems import (
    NUMBER_LIKE,
    KeyPath,
    Problem,
    describe,
    did_you_mean,
    is_number,
    suggest,
)

SECTIONS = ("model", "data", "trainer")
# Metric names whose direction a reader takes from the name alone; anything else needs `mode:`.
_MIN_WORDS = ("loss", "err", "mse", "mae", "rmse", "perplexity", "ppl", "nll", "cost", "regret")
_MAX_WORDS = ("acc", "f1", "auc", "precision", "recall", "r2", "iou", "map", "score", "bleu", "dice")


@dataclass(frozen=True)
class Component:
    """A class named by class path with its fixed ``init_args`` (nested class paths included)."""

    class_path: str
    init_args: Mapping[str, Any] = field(default_factory=dict)

    def as_config(self) -> dict[str, Any]:
        return {"class_path": self.class_path, "init_args": dict(self.init_args)}


def guess_mode(metric: str) -> str | None:
    """'min' for loss-like names, 'max' for accuracy-like ones, None when the name doesn't say."""
    lowered = metric.lower()
    if any(word in lowered for word in _MIN_WORDS):
        return "min"
    if any(word in lowered for word in _MAX_WORDS):
        return "max"
    return None


def trainer_class() -> type:
    import pytorch_lightning as pl

    return pl.Trainer


def wrong_base(cls: type, section: str) -> str | None:
    """The Lightning base class ``cls`` should have for the spec's ``section`` (``model`` or
    ``data``) when it lacks it, else None."""
    import pytorch_lightning as pl

    expected = pl.LightningModule if section == "model" else pl.LightningDataModule
    return None if issubclass(cls, expected) else expected.__name__


def known_metrics(model: Component | None) -> Mapping[str, str] | None:
    return KNOWN_METRICS.get(model.class_path) if model is not None else None


def argument_names(cls: type | None) -> list[str]:
    return list(components.class_arguments(cls)) if cls is not None else []


def split_target(key: str) -> tuple[str, ...]:
    """``model.encoder.init_args.width`` -> ("model", "encoder", "init_args", "width")."""
    return tuple(key.split("."))


def probe_values(param: Any) -> list[Any]:
    """Values that stand for a searched parameter when checking its type: the ends of a range,
    every choice of a categorical."""
    choices = getattr(param, "choices", None)
    if choices is not None:
        return list(choices)
    return [param.low, param.high]


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_config(model: Component, data: Component, trainer: Mapping[str, Any], values: Mapping[str, Any],
               targets: Mapping[str, tuple[str, ...]], task: TaskAlias | None) -> dict[str, Any]:
    """A run's config in LightningCLI's terms (``model``, ``data``, ``trainer``): ``values``
    (by search name) put in place, and a task alias's linked data arguments copied to the model."""
    # A deep copy: the values are the spec's, and a trial's config shares nothing with it.
    config: dict[str, Any] = copy.deepcopy({"model": model.as_config(), "data": data.as_config(),
                                            "trainer": dict(trainer)})
    for name, value in values.items():
        section, *rest = targets[name]
        if section == "trainer":
            config["trainer"] = components.nested_set(config["trainer"], rest, value)
        else:
            config[section]["init_args"] = components.nested_set(config[section]["init_args"], rest, value)
    if task is not None:
        for data_argument, model_argument in task.links.items():
            if data_argument in config["data"]["init_args"]:
                config["model"]["init_args"][model_argument] = config["data"]["init_args"][data_argument]
    return config


def input_problems(data: Component, data_args: Mapping[str, Any], model: Component,
                   model_args: Mapping[str, Any], *, hooks: bool = True) -> list[tuple[str, str]]:
    """(section, reason) for each of the run's inputs that cannot be used: the DataModule's
    ``__init__`` raised (cheap by Lightning's convention, and where a missing file shows) or
    its ``check_inputs()`` did (reads the user's files in full); the module's
    ``check_inputs(datamodule)`` raised (e.g. an ``init_from`` checkpoint that does not load or
    fit). The module is only built when it defines that hook: building a user's network just
    to check it could cost more than the check is worth. Without ``hooks`` only the DataModule's
    ``__init__`` runs."""
    try:
        datamodule = components.instantiate(data.class_path, data_args)
        if not hooks:
            return []
        if callable(getattr(datamodule, "check_inputs", None)):
            datamodule.check_inputs()
    except Exception as error:
        return [("data", _reason(error))]
    try:
        if callable(getattr(components.import_class(model.class_path), "check_inputs", None)):
            components.instantiate(model.class_path, model_args).check_inputs(datamodule)
    except Exception as error:
        return [("model", _reason(error))]
    return []


class ComponentChecks(FieldChecks):
    """The ``model:``, ``data:``, ``trainer:`` and ``metric:`` checks, and of any value bound for
    a class's ``__init__`` argument, at any depth of nested classes."""

    # Whether the user's input files are looked at (see spec.parse_spec): not for the views of a
    # finished run, which train nothing.
    read_inputs = True

    def __init__(self, source: str, marks: Mapping[KeyPath, int], base_dir: Path | None = None) -> None:
        super().__init__(source, marks, base_dir)
        # (section, argument) whose value has searched parts (a class choice, a nested argument):
        # checked with the space, as each trial gets it (SpaceRules.check_with_searches).
        self.deferred: set[tuple[str, str]] = set()
        # The argument names each section's init_args wrote, valid or not.
        self.written: dict[str, set[str]] = {}

    @contextlib.contextmanager
    def collecting(self) -> Iterator[list[Problem]]:
        """Problems found inside the block go to the list it yields instead of the spec's."""
        saved, self.problems = self.problems, []
        try:
            yield self.problems
        finally:
            self.problems = saved

    def argument_value(self, target: Target, value: Any, path: KeyPath) -> bool:
        """Check one value for ``target`` as LightningCLI's parser does (jsonargparse, through
        nested classes), plus finesweep's rules: a required argument is not null, an input file
        exists, a :class:`~finesweep.models.components.Range` holds. Problems are located at
        any depth; True when the value is accepted."""
        if target.class_slot:
            return spec_classes.class_choice(self, target, value, path)
        argument = components.class_arguments(target.cls)[target.argument]
        if value is None and argument.required and not components.admits_none(argument.annotation):
            self.problem(path, f"a value for {target.cls.__name__}'s required argument {target.argument!r}",
                         describe(value), "null leaves it unset: "
                         + spec_classes.required_hint(path, target.cls, target.argument))
            return False
        reason = components.check_argument(target.cls, target.argument, value)
        if reason is None:
            if spec_classes.walk(self, argument.annotation, value, path, structural=False):
                return False
            return self.input_exists(target, value, path)
        if not (self.plain_value(target, value, path)
                or spec_classes.walk(self, argument.annotation, value, path, structural=True)):
            bare = components.BARE_TYPE_REASON.match(reason.replace(f". Got value: {value}", ""))
            self.problem(path, components.describe_type(argument.annotation), describe(value), "" if bare else reason)
        return False

    def plain_value(self, target: Target, value: Any, path: KeyPath) -> bool:
        """A refused number, name or boolean, said in finesweep's words (bounds, choices, the
        YAML reading of the value); True when that reported it."""
        before = len(self.problems)
        kind, limits = target.kind, target.limits
        if (kind is int or kind is float) and not isinstance(value, bool) and (
                is_number(value) or (isinstance(value, str) and NUMBER_LIKE.match(value.strip()))):
            self.number(value, path, integer=kind is int, low=limits.low if limits else None,
                        high=limits.high if limits else None)
        elif kind is str and target.choices:
            self.string(value, path, target.choices)
        elif kind is bool:
            self.boolean(value, path)
        return len(self.problems) > before

    def input_exists(self, target: Target, value: Any, path: KeyPath) -> bool:
        """An input file of the user's model or data (see :mod:`~finesweep.search.spec.paths`)
        that exists; a problem when it does not."""
        if not self.read_inputs or target.section not in ("model", "data"):
            return True
        missing = spec_paths.missing_input(target.argument, value)
        if missing is not None:
            self.problem(path, f"an existing file: {target.cls.__name__} reads {target.argument}",
                         f"{missing!r}: no such file", "relative paths are taken from the spec's folder")
        return missing is None

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
            init_args = self.mapping(value, (section,), argument_names(cls) if cls else [])
            return Component(alias_class, self.init_arguments(cls, init_args, (section,))), cls
        if isinstance(value, str) and value:
            value = {"class_path": value}  # LightningCLI takes a class by its path alone
        if named_task and not (isinstance(value, dict) and "class_path" in value):
            return Component(""), None
        if value is None:
            if section == "data":
                self.problem(("data",), "a `data:` entry ({class_path, init_args}) naming your "
                             "LightningDataModule", "none")
            return Component(""), None
        keys = ["class_path", "init_args"]
        if not isinstance(value, dict):
            self.mapping(value, (section,), keys)
            return Component(""), None
        entry = {k: v for k, v in value.items() if k in keys}
        class_path = self.string(entry.get("class_path"), (section, "class_path"))
        if class_path is None:
            self.mapping(value, (section,), keys)
            return Component(""), None
        cls = self.import_class(class_path, (section, "class_path"))
        if cls is not None:
            expected = wrong_base(cls, section)
            if expected is not None:
                bases = ", ".join(b.__name__ for b in cls.__mro__[1:3])
                self.problem((section, "class_path"), f"a {expected} subclass", f"{class_path} (a subclass of {bases})")
                cls = None
        init_args = entry.get("init_args")
        if init_args is not None and not isinstance(init_args, dict):
            self.problem((section, "init_args"), "a mapping of arguments", describe(init_args))
            init_args = None
        names = argument_names(cls)
        misplaced = [key for key in value if key not in keys and key in names]
        for key in value:
            if key not in keys:
                self.problem((section, key), "one of the keys class_path, init_args", f"unknown key {key!r}",
                             f"{key!r} is an argument of {cls.__name__}: write it under init_args"
                             if key in misplaced else did_you_mean(key, keys))
        init_args = self.mapping(init_args, (section, "init_args"), names) if cls else {}
        fixed = self.init_arguments(cls, init_args, (section, "init_args"))
        self.written.setdefault(section, set()).update(misplaced)
        return Component(class_path, fixed), cls

    def import_class(self, class_path: str, path: KeyPath) -> type | None:
        from finesweep.search.user_code import shadowing_problem

        clash = shadowing_problem(class_path)
        if clash is not None:  # Its module is never the user's: the installed one comes first.
            self.problem(path, "a module of your own, named unlike any installed package", repr(class_path), clash)
            return None
        try:
            return components.import_class(class_path)
        except components.ComponentError as error:
            self.problem(path, "an importable class path (package.module.ClassName)", repr(class_path), str(error))
            return None

    def init_arguments(self, cls: type | None, given: Mapping[str, Any], path: KeyPath) -> dict[str, Any]:
        """The fixed arguments of ``cls`` that pass its checks (those with searched parts are
        checked with the space), relative paths made absolute at any depth."""
        if cls is None:
            return {}
        self.written[path[0]] = set(given)
        valid = {}
        for name, value in given.items():
            value = self.resolve_paths(cls, name, value, (*path, name))
            if (path[0], name) in self.deferred or self.argument_value(Target(cls, name, path[0]), value,
                                                                        (*path, name)):
                valid[name] = spec_classes.full_class_paths(components.class_arguments(cls)[name].annotation, value)
        return valid

    def resolve_paths(self, cls: type, name: str, value: Any, path: KeyPath) -> Any:
        """``value`` with relative paths in path arguments made absolute against the spec's folder
        (nested classes' too), so a run started from any working directory, and its exports,
        find the same files; the run's copy of the spec records them so."""
        resolved, changes = spec_paths.resolve_paths(cls, name, value, self.base_dir)
        for at, absolute in changes.items():
            self.resolved_paths[(*path, *at)] = absolute
        return resolved

    def trainer(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(("trainer",), "a mapping of Trainer options", describe(value))
            return {}
        from finesweep.models.run import RESERVED_TRAINER_OPTIONS

        cls = trainer_class()
        allowed = [n for n in argument_names(cls) if n not in RESERVED_TRAINER_OPTIONS]
        options = {}
        for name, option in value.items():
            if name in RESERVED_TRAINER_OPTIONS:
                self.problem(("trainer", name), "a Trainer option finesweep does not set itself",
                             repr(name), RESERVED_TRAINER_OPTIONS[name])
            elif name not in allowed:
                self.problem(("trainer", name), "a pytorch_lightning.Trainer option",
                             f"unknown key {name!r}", suggest(name, allowed))
            elif self.argument_value(Target(cls, name, "trainer"), option, ("trainer", name)):
                options[name] = spec_classes.full_class_paths(components.class_arguments(cls)[name].annotation,
                                                              option)
        return options

    def metric(self, model: Component, metric: Any, mode: Any, given: bool) -> tuple[str, str]:
        if mode is not None:
            mode = self.string(mode, ("mode",), ["min", "max"])
        if not given:
            return str(metric), mode or "max"
        if not isinstance(metric, str) or not metric:
            self.problem(("metric",), "the name of a value the model logs with self.log", describe(metric))
            return str(metric), mode or "max"
        known = known_metrics(model)
        if known is None:
            # The model's own metric: it is checked against what the module logs in the first trial.
            if mode is None:
                mode = guess_mode(metric)
                if mode is None:
                    self.problem(("mode",), f"min or max: whether {metric!r} improves down or up", "none",
                                 "add `mode: min` (losses, errors) or `mode: max` (accuracy, F1)")
            return metric, mode or "max"
        if metric not in known:
            self.problem(("metric",), f"a metric that the model reports: {', '.join(known)}", describe(metric),
                         did_you_mean(metric, list(known)))
            return str(metric), mode or "max"
        natural = known[metric]
        if mode is not None and mode != natural:
            self.problem(("mode",), f"{natural} ({metric} improves that way)", repr(mode),
                         "drop `mode:`; it follows from the metric")
        return metric, natural
