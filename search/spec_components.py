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

import inspect
import os
import pathlib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finesweep.models import components
from finesweep.models.tasks import KNOWN_METRICS, TaskAlias
from finesweep.search.spec_fields import FieldChecks
from finesweep.search.spec_problems import (
    NUMBER_LIKE,
    KeyPath,
    describe,
    did_you_mean,
    format_path,
    is_number,
    suggest,
)

SECTIONS = ("model", "data", "trainer")
# Metric names whose direction a reader takes from the name alone; anything else needs `mode:`.
_MIN_WORDS = ("loss", "err", "mse", "mae", "rmse", "perplexity", "ppl", "nll", "cost", "regret")
_MAX_WORDS = ("acc", "f1", "auc", "precision", "recall", "r2", "iou", "map", "score", "bleu", "dice")
# The value types a setting is checked as directly (bounds, choices); others go to jsonargparse.
_BASE_TYPES = (int, float, str, bool)


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


def is_path_argument(name: str, annotation: Any) -> bool:
    """Arguments that hold a file or folder: resolved against the spec's folder when relative."""
    if name in ("path", "init_from") or name.endswith(("_path", "_dir", "_file")):
        return True
    hints = [annotation, *typing.get_args(annotation)]
    return any(inspect.isclass(h) and issubclass(h, (os.PathLike, pathlib.PurePath)) for h in hints)


def resolve_relative(value: Any, base: Path) -> Any:
    """``value`` made absolute against ``base`` when it is a relative path string."""
    if isinstance(value, str) and value and not value.startswith("~") and not Path(value).is_absolute():
        return str((base / value).resolve())
    return value


def trainer_class() -> type:
    import pytorch_lightning as pl

    return pl.Trainer


def wrong_base(cls: type, section: str) -> str | None:
    """The base class ``cls`` should have for the spec's ``section`` (``model`` or ``data``)
    when it has neither Lightning's nor a simulated task's (:mod:`finesweep.models.simulation`,
    trained without torch), else None. Lightning is imported only for a class that is not
    simulated: a replay sweep's driver never loads torch."""
    from finesweep.models.simulation import SimulatedData, SimulatedModel

    if issubclass(cls, SimulatedModel if section == "model" else SimulatedData):
        return None
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


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_config(model: Component, data: Component, trainer: Mapping[str, Any], values: Mapping[str, Any],
               targets: Mapping[str, tuple[str, ...]], task: TaskAlias | None) -> dict[str, Any]:
    """A run's config in LightningCLI's terms (``model``, ``data``, ``trainer``): ``values``
    (by search name) put in place, and a task alias's linked data arguments copied to the model."""
    config: dict[str, Any] = {"model": model.as_config(), "data": data.as_config(), "trainer": dict(trainer)}
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


def required_missing(cls: type, given: Sequence[str]) -> list[str]:
    return [a.name for a in components.class_arguments(cls).values() if a.required and a.name not in given]


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
    def kind(self) -> type | None:
        """The value type checked directly (see :func:`base_type`); None inside a nested class."""
        return None if self.nested else base_type(self.annotation)

    @property
    def limits(self) -> components.Range | None:
        return None if self.nested else components.bounds(self.annotation)

    @property
    def choices(self) -> tuple[str, ...]:
        hint = self.annotation
        if typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        return tuple(typing.get_args(hint)) if typing.get_origin(hint) is typing.Literal else ()


class ComponentChecks(FieldChecks):
    """The ``model:``, ``data:``, ``trainer:`` and ``metric:`` checks, and of any value bound for
    a class's ``__init__`` argument."""

    def argument_value(self, target: Target, value: Any, path: KeyPath) -> bool:
        """Check one value for ``target`` against its class's signature: the type hint through
        jsonargparse, the bounds of a :class:`~finesweep.models.components.Range`; one problem."""
        kind, limits = target.kind, target.limits
        if (kind is int or kind is float) and not isinstance(value, bool) and (
                is_number(value) or (isinstance(value, str) and NUMBER_LIKE.match(value.strip()))):
            low = limits.low if limits else None
            high = limits.high if limits else None
            return self.number(value, path, integer=kind is int, low=low, high=high) is not None
        if kind is str and target.choices:
            return self.string(value, path, target.choices) is not None
        if kind is bool and not target.nested:
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
                         describe(value), reason if target.nested or "Expected" not in reason else "")
            return False
        return True

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
            expected = wrong_base(cls, section)
            if expected is not None:
                bases = ", ".join(b.__name__ for b in cls.__mro__[1:3])
                self.problem((section, "class_path"), f"a {expected} subclass", f"{class_path} (a subclass of {bases})")
                cls = None
        init_args = entry.get("init_args")
        if init_args is not None and not isinstance(init_args, dict):
            self.problem((section, "init_args"), "a mapping of arguments", describe(init_args))
            init_args = None
        init_args = self.mapping(init_args, (section, "init_args"), argument_names(cls)) if cls else {}
        return Component(class_path, self.init_arguments(cls, init_args, (section, "init_args"))), cls

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
        if target.nested or not is_path_argument(target.argument, target.annotation):
            return value
        resolved = resolve_relative(value, self.base_dir)
        if resolved != value:
            self.resolved_paths[path] = resolved
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
            elif self.argument_value(Target(cls, name, ()), option, ("trainer", name)):
                options[name] = option
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
