"""The spec's model, data and trainer sections, checked against the classes they name.

A spec names a ``LightningModule`` and a ``LightningDataModule`` as LightningCLI does
(``{class_path, init_args}``), or a built-in task by its short name; Trainer options go under
``trainer:``. Every fixed and searched value is checked against the ``__init__`` signatures and
type hints through :mod:`finesweep.models.components` (jsonargparse, as LightningCLI checks
them), before Ray or any trial starts. The rules here only say where a value goes and what
to report; the type checking itself is jsonargparse's.
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
from finesweep.models.tasks import KNOWN_METRICS

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


def base_classes() -> dict[str, tuple[type, ...]]:
    """What a spec's ``model`` and ``data`` classes may be: Lightning's, or a simulated task's
    (:mod:`finesweep.models.simulation`, trained without torch)."""
    import pytorch_lightning as pl
    from finesweep.models.simulation import SimulatedData, SimulatedModel

    return {"model": (pl.LightningModule, SimulatedModel), "data": (pl.LightningDataModule, SimulatedData)}


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


def base_kind(annotation: Any) -> str | None:
    """'int', 'float', 'names' (str or Literal), 'bool', or None for anything else."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return base_kind(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return "names" if all(isinstance(a, str) for a in typing.get_args(annotation)) else None
    if origin in (typing.Union, types.UnionType):
        kinds = {base_kind(a) for a in typing.get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    return {int: "int", float: "float", str: "names", bool: "bool"}.get(annotation)


def instantiation_error(component: Component, init_args: Mapping[str, Any]) -> str | None:
    """Why the class cannot be built from ``init_args`` (its ``__init__`` raised), or None.
    Only for DataModules: their ``__init__`` is cheap by Lightning's convention (loading
    happens in ``prepare_data``/``setup``), and it is where a missing file shows."""
    try:
        components.instantiate(component.class_path, init_args)
    except Exception as error:
        text = " ".join(str(error).split())
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return None


def required_missing(cls: type, given: Sequence[str]) -> list[str]:
    return [a.name for a in components.class_arguments(cls).values() if a.required and a.name not in given]
