"""`launch.py init MODEL --data DATA`: a starting spec from the classes' own signatures.

Every ``__init__`` argument appears with its default; the usual suspects (learning rate,
dropout, weight decay, widths, depths, batch size, choices) get a suggested range in ``space:``
from their name and type, so a user edits a working spec instead of writing one.
"""

from __future__ import annotations

import typing
from typing import Any

import yaml
from finesweep.models import components
from finesweep.search.spec_classes import base_type

_WIDTH_WORDS = ("hidden", "width", "units", "channels", "dim", "neurons", "filters", "embed")
_DEPTH_WORDS = ("layers", "depth", "blocks")


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=200, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def suggest(name: str, argument: components.Argument) -> dict[str, Any] | None:
    """A search range for an argument, judged by its name, type and default; None to keep it fixed."""
    kind, default, lowered = base_type(argument.annotation), argument.default, name.lower()
    limits = components.bounds(argument.annotation)
    hint = argument.annotation
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) is typing.Literal and len(typing.get_args(hint)) > 1:
        return {"type": "categorical", "choices": list(typing.get_args(hint))}
    number = isinstance(default, (int, float)) and not isinstance(default, bool)
    if kind is float or (kind is None and isinstance(default, float)):
        if lowered in ("lr", "learning_rate") or lowered.endswith(("_lr", "learning_rate")):
            centre = default if number and default > 0 else 1e-3
            return {"type": "float", "low": float(f"{centre / 10:.1e}"), "high": float(f"{min(centre * 10, 1.0):.1e}"),
                    "log": True}
        if "dropout" in lowered:
            return {"type": "float", "low": 0.0, "high": 0.5}
        if "weight_decay" in lowered or lowered == "wd":
            return {"type": "float", "low": 1.0e-6, "high": 1.0e-2, "log": True}
        if "momentum" in lowered:
            return {"type": "float", "low": 0.5, "high": 0.99}
        return None
    if kind is int or (kind is None and isinstance(default, int) and not isinstance(default, bool)):
        if lowered == "batch_size" or lowered.endswith("batch_size"):
            return {"type": "categorical", "choices": [16, 32, 64, 128]}
        if number and default >= 1 and any(w in lowered for w in _WIDTH_WORDS):
            low = max(1, int(default) // 4) if not limits or limits.low is None else max(int(limits.low), 1)
            return {"type": "int", "low": low, "high": max(int(default) * 4, low + 1), "log": True}
        if number and default >= 1 and any(w in lowered for w in _DEPTH_WORDS):
            high = max(3, int(default) * 2)
            if limits is not None and limits.high is not None:
                high = min(high, int(limits.high))
            return {"type": "int", "low": 1, "high": max(high, 2)}
    return None


def _section(title: str, class_path: str, prefix: str) -> tuple[list[str], list[str]]:
    """The ``{class_path, init_args}`` lines of one class and its suggested space lines."""
    cls = components.import_class(class_path)
    arguments = components.class_arguments(cls)
    lines = [f"{title}:", f"  class_path: {cls.__module__}.{cls.__qualname__}", "  init_args:"]
    space: list[str] = []
    fixed_count = 0
    for name, argument in arguments.items():
        about = f"  # {argument.help.splitlines()[0]}" if argument.help else ""
        typed = components.describe_type(argument.annotation)
        if argument.required:
            lines.append(f"    {name}: null   # REQUIRED ({typed}): give a value or search it{about}")
            fixed_count += 1
            continue
        if argument.default is not None and not isinstance(argument.default, (bool, int, float, str)):
            continue  # Objects (modules, callables) are not written into a config as defaults.
        suggestion = suggest(name, argument)
        if suggestion is not None:
            space.append(f"  {prefix}.{name}: {_flow(suggestion)}   # default {argument.default!r}{about}")
        else:
            lines.append(f"    {name}: {_flow(argument.default)}   # {typed}{about}")
            fixed_count += 1
    if not fixed_count:
        lines[-1] = "  init_args: {}"
    return lines, space


def starting_spec(model: str, data: str, name: str | None = None) -> str:
    """The text of a starting spec for ``model`` trained on ``data`` (class paths)."""
    model_lines, model_space = _section("model", model, "model")
    data_lines, data_space = _section("data", data, "data")
    model_cls = components.import_class(model)
    name = name or "".join(c if c.isalnum() else "_" for c in model_cls.__name__.lower())
    space = model_space + data_space or ["  # model.ARG: {type: float, low: ..., high: ...}"]
    text = [
        f"# A starting spec for {model_cls.__name__}, written by `launch.py init`: edit it, then",
        "#   python launch.py sweep THIS_FILE.yaml",
        "# Fixed arguments sit under init_args; searched ones under space (model.ARG, data.ARG,",
        "# trainer.OPTION). Ranges below are suggestions from each argument's name and default.",
        f"name: {name}",
        *model_lines,
        *data_lines,
        "trainer: {}            # Trainer options, e.g. gradient_clip_val: 1.0",
        "metric: val_loss       # a name your module logs with self.log in validation_step",
        "mode: min",
        "space:",
        *space,
        "strategy: {name: global, seed: 0}",
        "scheduler: {name: asha, options: {grace_period: 1}}",
        "budget: {trials: 20, max_epochs: 10}",
        "resources: {cpus: 1, gpus: 0, concurrency: 2}",
    ]
    return "\n".join(text) + "\n"


def task_table() -> str:
    from finesweep.models.tasks import TASKS

    width = max(map(len, TASKS))
    rows = [f"{'task':<{width}}  description / classes"]
    for alias in TASKS.values():
        rows.append(f"{alias.name:<{width}}  {alias.description}")
        rows.append(f"{'':<{width}}    model: {alias.model}")
        rows.append(f"{'':<{width}}    data:  {alias.data}")
        rows.append(f"{'':<{width}}    metrics: {', '.join(f'{m} ({d})' for m, d in alias.metrics.items())}")
    return "\n".join(rows)


