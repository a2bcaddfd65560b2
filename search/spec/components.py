"""The spec's model, data and trainer sections, checked against the classes they name.

A spec names a ``LightningModule`` and a ``LightningDataModule`` as LightningCLI does
(``{class_path, init_args}``), or a built-in task by its short name; Trainer options go under
``trainer:``. Every fixed and searched value is checked against the ``__init__`` signatures and
type hints through :mod:`finesweep.models.components` (jsonargparse, as LightningCLI checks
them), before Ray or any trial starts. The rules here only say where a value goes and what
to report; the type checking itself is jsonargparse's. Each section is one function given the
:class:`~finesweep.search.spec.fields.FieldChecks` that collects the problems; an exported
config (``best.yaml``) is checked by these functions alone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from finesweep.models import components
from finesweep.models.run import RESERVED_TRAINER_OPTIONS, reserved_callback
from finesweep.models.tasks import KNOWN_METRICS, TaskAlias
from finesweep.search.spec import classes as spec_classes
from finesweep.search.spec import paths as spec_paths
from finesweep.search.spec.classes import Target
from finesweep.search.spec.fields import FieldChecks
from finesweep.search.spec.problems import (
    KeyPath,
    describe,
    did_you_mean,
    suggest,
)
from finesweep.search.user_code import shadowing_problem

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
    import pytorch_lightning as pl  # Lightning and torch take seconds: not when `--help` imports the spec.

    return pl.Trainer


def wrong_base(cls: type, section: str) -> str | None:
    """The Lightning base class ``cls`` should have for the spec's ``section`` (``model`` or
    ``data``) when it lacks it, else None."""
    import pytorch_lightning as pl  # Lightning and torch take seconds: not when `--help` imports the spec.

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


def check_component(checks: FieldChecks, section: str, alias_class: str | None, value: Any,
                    named_task: bool = False, deferred: Set[tuple[str, str]] = frozenset(),
                    ) -> tuple[Component, type | None, set[str]]:
    """The ``model:`` or ``data:`` section: a class path and fixed ``init_args``, or, under a
    built-in ``task:``, the task's class with ``data:`` holding its settings directly; with the
    argument names its init_args wrote, valid or not. ``deferred``: the (section, argument)
    whose value has searched parts, checked with the space as each trial gets it
    (:func:`~finesweep.search.spec.choices.check_with_searches`)."""
    if alias_class is not None:
        if isinstance(value, dict) and "class_path" in value:
            checks.problem((section, "class_path"), f"the task's {section} settings",
                           "a class path beside `task:`", "drop `task:` to name your own classes")
            return Component(alias_class), None, set()
        cls = import_named_class(checks, alias_class, (section,))
        init_args = checks.mapping(value, (section,), argument_names(cls) if cls else [])
        fixed = init_arguments(checks, cls, init_args, (section,), deferred)
        return Component(alias_class, fixed), cls, set(init_args) if cls else set()
    if isinstance(value, str) and value:
        value = {"class_path": value}  # LightningCLI takes a class by its path alone
    if named_task and not (isinstance(value, dict) and "class_path" in value):
        return Component(""), None, set()
    if value is None:
        if section == "data":
            checks.problem(("data",), "a `data:` entry ({class_path, init_args}) naming your "
                           "LightningDataModule", "none")
        return Component(""), None, set()
    keys = ["class_path", "init_args"]
    if not isinstance(value, dict):
        checks.mapping(value, (section,), keys)
        return Component(""), None, set()
    entry = {k: v for k, v in value.items() if k in keys}
    class_path = checks.string(entry.get("class_path"), (section, "class_path"))
    if class_path is None:
        checks.mapping(value, (section,), keys)
        return Component(""), None, set()
    cls = import_named_class(checks, class_path, (section, "class_path"))
    if cls is not None:
        expected = wrong_base(cls, section)
        if expected is not None:
            bases = ", ".join(b.__name__ for b in cls.__mro__[1:3])
            checks.problem((section, "class_path"), f"a {expected} subclass", f"{class_path} (a subclass of {bases})")
            cls = None
    init_args = entry.get("init_args")
    if init_args is not None and not isinstance(init_args, dict):
        checks.problem((section, "init_args"), "a mapping of arguments", describe(init_args))
        init_args = None
    names = argument_names(cls)
    misplaced = [key for key in value if key not in keys and key in names]
    for key in value:
        if key not in keys:
            checks.problem((section, key), "one of the keys class_path, init_args", f"unknown key {key!r}",
                           f"{key!r} is an argument of {cls.__name__}: write it under init_args"
                           if key in misplaced else did_you_mean(key, keys))
    init_args = checks.mapping(init_args, (section, "init_args"), names) if cls else {}
    fixed = init_arguments(checks, cls, init_args, (section, "init_args"), deferred)
    return Component(class_path, fixed), cls, {*init_args, *misplaced} if cls else set()


def import_named_class(checks: FieldChecks, class_path: str, path: KeyPath) -> type | None:
    clash = shadowing_problem(class_path)
    if clash is not None:  # Its module is never the user's: the installed one comes first.
        checks.problem(path, "a module of your own, named unlike any installed package", repr(class_path), clash)
        return None
    try:
        return components.import_class(class_path)
    except components.ComponentError as error:
        checks.problem(path, "an importable class path (package.module.ClassName)", repr(class_path), str(error))
        return None


def init_arguments(checks: FieldChecks, cls: type | None, given: Mapping[str, Any], path: KeyPath,
                   deferred: Set[tuple[str, str]] = frozenset()) -> dict[str, Any]:
    """The fixed arguments of ``cls`` that pass its checks (those with searched parts are
    checked with the space), relative paths made absolute at any depth."""
    if cls is None:
        return {}
    valid = {}
    for name, value in given.items():
        value = resolve_argument_paths(checks, cls, name, value, (*path, name))
        if (path[0], name) in deferred or spec_classes.argument_value(checks, Target(cls, name, path[0]), value,
                                                                      (*path, name)):
            valid[name] = spec_classes.full_class_paths(components.class_arguments(cls)[name].annotation, value)
    return valid


def resolve_argument_paths(checks: FieldChecks, cls: type, name: str, value: Any, path: KeyPath) -> Any:
    """``value`` with relative paths in path arguments made absolute against the spec's folder
    (nested classes' too), so a run started from any working directory, and its exports,
    find the same files; the run's copy of the spec records them so."""
    resolved, changes = spec_paths.resolve_paths(cls, name, value, checks.base_dir)
    for at, absolute in changes.items():
        checks.resolved_paths[(*path, *at)] = absolute
    return resolved


def check_trainer(checks: FieldChecks, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        checks.problem(("trainer",), "a mapping of Trainer options", describe(value))
        return {}
    cls = trainer_class()
    allowed = [n for n in argument_names(cls) if n not in RESERVED_TRAINER_OPTIONS]
    options = {}
    for name, option in value.items():
        if name in RESERVED_TRAINER_OPTIONS:
            checks.problem(("trainer", name), "a Trainer option finesweep does not set itself",
                           repr(name), RESERVED_TRAINER_OPTIONS[name])
        elif name not in allowed:
            checks.problem(("trainer", name), "a pytorch_lightning.Trainer option",
                           f"unknown key {name!r}", suggest(name, allowed))
        elif spec_classes.argument_value(checks, Target(cls, name, "trainer"), option, ("trainer", name)):
            options[name] = spec_classes.full_class_paths(components.class_arguments(cls)[name].annotation,
                                                          option)
    return options


def reserved_callbacks(checks: FieldChecks, callbacks: Any) -> None:
    """A ``trainer.callbacks`` entry that would do finesweep's own job (checkpointing, a
    progress bar) is a problem at its class path, not a clash inside every trial."""
    listed = isinstance(callbacks, list)
    for index, item in enumerate(callbacks if listed else [callbacks]):
        class_path = item.get("class_path") if isinstance(item, dict) else None
        cls = spec_classes.callback_class(class_path) if isinstance(class_path, str) else None
        clash = reserved_callback(cls) if cls is not None else None
        if clash is not None:
            at = ("trainer", "callbacks", *((index,) if listed else ()), "class_path")
            checks.problem(at, "a callback that leaves checkpoints and progress to finesweep",
                           f"{class_path}, {clash}")


def check_metric(checks: FieldChecks, model: Component, metric: Any, mode: Any, given: bool) -> tuple[str, str]:
    if mode is not None:
        mode = checks.string(mode, ("mode",), ["min", "max"])
    if not given:
        return str(metric), mode or "max"
    if not isinstance(metric, str) or not metric:
        checks.problem(("metric",), "the name of a value the model logs with checks.log", describe(metric))
        return str(metric), mode or "max"
    known = known_metrics(model)
    if known is None:
        # The model's own metric: it is checked against what the module logs in the first trial.
        if mode is None:
            mode = guess_mode(metric)
            if mode is None:
                checks.problem(("mode",), f"min or max: whether {metric!r} improves down or up", "none",
                               "add `mode: min` (losses, errors) or `mode: max` (accuracy, F1)")
        return metric, mode or "max"
    if metric not in known:
        checks.problem(("metric",), f"a metric that the model reports: {', '.join(known)}", describe(metric),
                       did_you_mean(metric, list(known)))
        return str(metric), mode or "max"
    natural = known[metric]
    if mode is not None and mode != natural:
        checks.problem(("mode",), f"{natural} ({metric} improves that way)", repr(mode),
                       "drop `mode:`; it follows from the metric")
    return metric, natural
