"""`launch.py init MODEL --data DATA`: a starting spec from the classes' own signatures.

Every ``__init__`` argument appears with its default; the usual suspects (learning rate,
dropout, weight decay, widths, depths, batch size, choices) get a suggested range in ``space:``
from their name and type, so a user edits a working spec instead of writing one.
"""

from __future__ import annotations

import inspect
import sys
import typing
from typing import Any

import yaml
from finesweep.models import components
from finesweep.models.tasks import TASKS
from finesweep.search.spec.classes import base_type
from finesweep.search.spec.components import wrong_base

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


# Arguments that only some optimizers read, by the optimizer names (a Literal's choices) that do.
OPTIMIZER_ARGUMENTS = {
    "momentum": ("sgd", "rmsprop"), "nesterov": ("sgd",), "dampening": ("sgd",),
    "betas": ("adam", "adamw"), "beta1": ("adam", "adamw"), "beta2": ("adam", "adamw"),
    "amsgrad": ("adam", "adamw"), "centered": ("rmsprop",), "alpha": ("rmsprop",),
}


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def concrete_classes(owner: type, name: str, bases: tuple[type, ...]) -> list[type]:
    """The classes defined beside ``owner`` (in its module) that a class-typed argument ``name``
    can take: subclasses of ``bases``, not Lightning modules, not abstract; those whose name
    contains the argument's (``ConvEncoder`` for ``encoder``) when there are any."""
    # Imported here: torch and Lightning are slow to import.
    import pytorch_lightning as pl

    module = sys.modules[owner.__module__]
    found = [c for c in vars(module).values()
             if inspect.isclass(c) and c.__module__ == module.__name__ and c is not owner
             and issubclass(c, bases) and not issubclass(c, (pl.LightningModule, pl.LightningDataModule))
             and not inspect.isabstract(c)]
    named = [c for c in found if name.replace("_", "").lower() in c.__name__.lower()]
    return named or found


def _arguments(cls: type, prefix: str, when: dict[str, Any] | None = None
               ) -> tuple[list[str], list[tuple[str, dict[str, Any], str]]]:
    """One class's fixed argument lines and its searched ``(key, entry, comment)``, with a
    ``when:`` for an argument only some values of a searched Literal use (momentum: sgd)."""
    arguments = components.class_arguments(cls)
    fixed: list[str] = []
    searched: list[tuple[str, dict[str, Any], str]] = []
    for name, argument in arguments.items():
        about = f"  # {argument.help.splitlines()[0]}" if argument.help else ""
        typed = components.describe_type(argument.annotation)
        if components.class_bases(argument.annotation) and (argument.required or argument.default is None):
            nested = concrete_classes(cls, name, components.class_bases(argument.annotation))
            if nested and argument.required:
                lines, entries = _nested(name, nested, f"{prefix}.{name}")
                fixed += lines
                searched += entries
                continue
        if argument.required:
            # Left out, not null: the check then says which argument is missing and how to give it.
            fixed.append(f"# {name}: REQUIRED ({typed}): write it here, or search it as {prefix}.{name}{about}")
            continue
        if argument.default is not None and not isinstance(argument.default, (bool, int, float, str)):
            continue  # Objects (modules, callables) are not written into a config as defaults.
        suggestion = suggest(name, argument)
        if suggestion is not None:
            searched.append((f"{prefix}.{name}", {**suggestion, **({"when": when} if when else {})},
                             f"default {argument.default!r}{about}"))
        else:
            fixed.append(f"{name}: {_flow(argument.default)}   # {typed}{about}")
    return fixed, _conditional_on_optimizer(searched, prefix)


def _conditional_on_optimizer(searched: list[tuple[str, dict[str, Any], str]], prefix: str
                              ) -> list[tuple[str, dict[str, Any], str]]:
    choices = {key: entry["choices"] for key, entry, _ in searched
               if entry.get("type") == "categorical" and all(isinstance(c, str) for c in entry["choices"])}
    result = []
    for key, entry, comment in searched:
        users = OPTIMIZER_ARGUMENTS.get(key.rsplit(".", 1)[-1].lower())
        for choice_key, options in choices.items():
            used_by = [o for o in options if users and o.lower() in users]
            if used_by and len(used_by) < len(options) and "when" not in entry:
                entry = {**entry, "when": {choice_key: used_by[0] if len(used_by) == 1 else used_by}}
                comment += f"; only {', '.join(used_by)} use{'s' if len(used_by) == 1 else ''} it"
        result.append((key, entry, comment))
    return result


def _nested(name: str, classes: list[type], key: str) -> tuple[list[str], list[tuple[str, dict[str, Any], str]]]:
    """A required class-typed argument: the one class found beside the model, fixed, or several
    searched as ``key.class_path`` with each one's own arguments conditional on it."""
    if len(classes) == 1:
        fixed, searched = _arguments(classes[0], f"{key}.init_args")
        inner = "{" + ", ".join(line.split("   #")[0] for line in fixed if not line.startswith("#")) + "}"
        return [f"{name}: {{class_path: {_qualified(classes[0])}, init_args: {inner}}}"], searched
    slot = f"{key}.class_path"
    searched = [(slot, {"type": "categorical", "choices": [_qualified(c) for c in classes]},
                 f"the classes beside the model that {name} takes")]
    per_key: dict[str, list[tuple[type, dict[str, Any], str]]] = {}
    for cls in classes:
        for entry_key, entry, comment in _arguments(cls, f"{key}.init_args")[1]:
            per_key.setdefault(entry_key, []).append((cls, entry, comment))
    for entry_key, found in per_key.items():
        entry = _merged([e for _, e, _ in found])
        if entry is None:  # the classes take it as different kinds: searched for the first one only
            found = found[:1]
            entry = found[0][1]
        takers = [_qualified(c) for c, _, _ in found]
        comment = found[0][2] if len(found) == 1 else f"{' and '.join(c.__name__ for c, _, _ in found)} take it"
        if len(takers) < len(classes):
            entry = {**entry, "when": {**entry.get("when", {}), slot: takers[0] if len(takers) == 1 else takers}}
        searched.append((entry_key, entry, comment))
    return [f"# {name}: searched below as {slot}"], searched


def _merged(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One range covering several classes' suggestions of the same kind, or None."""
    first = entries[0]
    if all(e == first for e in entries):
        return first
    if first.get("type") in ("int", "float") and all(e.get("type") == first["type"] and e.get("log") == first.get("log")
                                                     for e in entries):
        return {**first, "low": min(e["low"] for e in entries), "high": max(e["high"] for e in entries)}
    return None


def _section(title: str, class_path: str, prefix: str) -> tuple[list[str], list[str]]:
    """The ``{class_path, init_args}`` lines of one class and its suggested space lines."""
    cls = components.import_class(class_path)
    expected = wrong_base(cls, title)
    if expected is not None:
        bases = ", ".join(b.__name__ for b in cls.__mro__[1:3])
        raise components.ComponentError(f"{class_path} is not a {expected} (it is a subclass of {bases}); "
                                        f"init writes a spec for a LightningModule and its LightningDataModule")
    fixed, searched = _arguments(cls, prefix)
    written = [line for line in fixed if not line.startswith("#")]
    lines = [f"{title}:", f"  class_path: {_qualified(cls)}", "  init_args:" if written else "  init_args: {}"]
    lines += [f"    {line}" for line in fixed]
    space = [f"  {key}: {_flow(entry)}   # {comment}" for key, entry, comment in searched]
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
    width = max(map(len, TASKS))
    rows = [f"{'task':<{width}}  description / classes"]
    for alias in TASKS.values():
        rows.append(f"{alias.name:<{width}}  {alias.description}")
        rows.append(f"{'':<{width}}    model: {alias.model}")
        rows.append(f"{'':<{width}}    data:  {alias.data}")
        rows.append(f"{'':<{width}}    metrics: {', '.join(f'{m} ({d})' for m, d in alias.metrics.items())}")
    return "\n".join(rows)


