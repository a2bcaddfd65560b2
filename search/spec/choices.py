"""Searching the class of a nested argument, and searching inside one.

``model.encoder.class_path: {type: categorical, choices: [pkg.ConvEncoder, pkg.MLPEncoder]}``
makes the encoder's class a parameter like any other; each class's own arguments are searched
with ``when: {model.encoder.class_path: pkg.ConvEncoder}``, an argument every choice takes
(both encoders' ``width``) without one. The model's fixed ``encoder`` value, if any, then holds
what every choice shares. An argument the space reaches into is checked here as trials get it:
its fixed value with each class choice and each searched value active under that choice put in
place, so a class's required argument left to nobody, or a fixed argument one class does not
take, is reported before any trial runs.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Set
from typing import Any

from finesweep.models import components
from finesweep.search.space import CategoricalParam, Param
from finesweep.search.spec import classes as spec_classes
from finesweep.search.spec.classes import ClassChoices, Target
from finesweep.search.spec.fields import FieldChecks
from finesweep.search.spec.problems import KeyPath, format_path, suggest

Targets = Mapping[str, tuple[str, ...]]


def deferred_arguments(space: Any) -> set[tuple[str, str]]:
    """The model and data arguments that space keys reach into (``model.encoder.init_args.width``,
    ``model.encoder.class_path``): their fixed values are checked with the space."""
    if not isinstance(space, Mapping):
        return set()
    parts = [key.split(".") for key in space if isinstance(key, str)]
    return {(p[0], p[1]) for p in parts if len(p) > 2 and p[0] in ("model", "data")}


def class_choices(space: Mapping[Any, Any]) -> ClassChoices:
    """The classes a space searches or fixes for class-typed arguments, by the key of the
    argument: ``model.encoder.class_path: {type: categorical, choices: [...]}`` gives
    "model.encoder" -> ("model.encoder.class_path", choices)."""
    found: dict[str, tuple[str | None, tuple[Any, ...]]] = {}
    for key, entry in space.items():
        if not isinstance(key, str) or not key.endswith(".class_path"):
            continue
        if isinstance(entry, dict) and entry.get("type") == "categorical" and isinstance(entry.get("choices"), list):
            found[key.removesuffix(".class_path")] = (key, tuple(entry["choices"]))
        elif isinstance(entry, str):
            found[key.removesuffix(".class_path")] = (None, (entry,))
        else:  # searched as something else: reported as that entry's problem, and no class known
            found[key.removesuffix(".class_path")] = (key, ())
    return found


def check_with_searches(checks: FieldChecks, classes: Mapping[str, type | None],
                        fixed_components: Mapping[str, Any], params: list[Param], fixed: Mapping[str, Any],
                        targets: Targets, rejected: Set[str], deferred: Set[tuple[str, str]]) -> None:
    """Each argument of :func:`deferred_arguments` checked as trials get it: its fixed value with
    each combination of its class choices and every searched value active under it (the first
    value it may take) put in place. A problem at a searched value or a class choice is that
    space entry's own, reported there; an argument with a space entry that was refused is not
    checked again."""
    for section, argument in sorted(deferred):
        cls = classes.get(section)
        if cls is None or argument not in components.class_arguments(cls):
            continue
        if any(name.startswith(f"{section}.{argument}.") for name in rejected):
            continue
        inside = {n: t for n, t in targets.items() if t[:2] == (section, argument) and len(t) > 2}
        slots = [p for p in params if p.name in inside and inside[p.name][-1] == "class_path"
                 and isinstance(p, CategoricalParam)]
        written = dict(fixed_components[section].init_args)
        for slot in slots:
            written = _shared_arguments(checks, cls, written, inside[slot.name], slot)
        seen: set[KeyPath] = set()
        for pick in itertools.product(*(slot.choices for slot in slots)):
            combo = dict(zip((slot.name for slot in slots), pick, strict=True))
            values = {n: v for n, v in fixed.items() if n in inside}
            for param in params:
                if param.name in inside and all(c.holds(combo) for c in param.when if c.parameter in combo):
                    values[param.name] = combo.get(param.name, _first(param))
            tree = {argument: written[argument]} if argument in written else {}
            for name in sorted(values, key=lambda n: inside[n][-1] != "class_path"):
                tree = components.nested_set(tree, inside[name][1:], values[name])
            if argument not in tree:
                continue
            with checks.collecting() as found:
                spec_classes.argument_value(checks, Target(cls, argument, section), tree[argument],
                                            spec_classes.spec_path((section, argument)))
            searched = [spec_classes.spec_path(inside[n]) for n in values]
            note = f"with {', '.join(f'{k}: {v}' for k, v in combo.items())}" if combo else ""
            for problem in found:
                if problem.path in seen or any(problem.path[:len(s)] == s for s in searched):
                    continue
                seen.add(problem.path)
                checks.problems.append(dataclasses.replace(
                    problem, hint="; ".join(h for h in (problem.hint, note) if h)))


def _first(param: Param) -> Any:
    choices = getattr(param, "choices", None)
    return choices[0] if choices is not None else param.low


def _shared_arguments(checks: FieldChecks, cls: type, written: dict[str, Any], slot_target: tuple[str, ...],
                      slot: CategoricalParam) -> dict[str, Any]:
    """``written`` without the fixed arguments of a searched class that only some of its choices
    take (each reported with how to make it conditional); arguments no choice takes are left
    for the check of each choice, which says "did you mean"."""
    if len(slot_target) != 3:  # a class searched deeper inside: checked choice by choice only
        return written
    section, argument = slot_target[:2]
    value = written.get(argument)
    init_args = value.get("init_args") if isinstance(value, Mapping) else None
    if not isinstance(init_args, Mapping):
        return written
    bases = components.class_bases(components.class_arguments(cls)[argument].annotation)
    owners = {c: spec_classes.resolve(checks, bases, c, (), report=False) for c in slot.choices}
    kept = dict(init_args)
    for key in init_args:
        having = [c for c, owner in owners.items() if owner is not None and key in components.class_arguments(owner)]
        lacking = [c for c, owner in owners.items() if owner is not None and c not in having]
        if having and lacking:
            search = f"{section}.{argument}.init_args.{key}"
            checks.problem(spec_classes.spec_path((section, argument, "init_args", key)),
                           f"an argument every class of {slot.name} takes",
                           f"{key!r}, which {', '.join(map(str, lacking))} does not take",
                           f"search it only for {', '.join(map(str, having))}: {search}: {{type: categorical, "
                           f"choices: [{init_args[key]}], when: {{{slot.name}: {having[0]}}}}}")
            del kept[key]
    return {**written, argument: {**value, "init_args": kept}}


def space_targets(checks: FieldChecks, key: str, cls: type, fixed_args: Mapping[str, Any], choices: ClassChoices,
                  when: Mapping[str, Any], path: KeyPath) -> list[Target] | None:
    """The targets of a dotted space key (``model.lr``, ``model.encoder.class_path``,
    ``model.encoder.init_args.width`` at any depth): one per class the value may go to, under
    a searched class those its ``when:`` allows; None (and a problem) when nowhere."""
    section, argument, *rest = key.split(".")
    return _targets(checks, section, [section], cls, argument, rest, fixed_args.get(argument), choices, when, path,
                    key)


def _targets(checks: FieldChecks, section: str, prefix: list[str], cls: type, argument: str, rest: list[str],
             fixed: Any, choices: ClassChoices, when: Mapping[str, Any], path: KeyPath,
             key: str) -> list[Target] | None:
    here = ".".join([*prefix, argument])
    if not rest:
        return [Target(cls, argument, section)]
    if rest == ["class_path"]:
        return [Target(cls, argument, section, class_slot=True)]
    if rest[0] != "init_args" or len(rest) < 2:
        checks.problem(path, f"{here}.init_args.NAME (an argument of the class it names) or {here}.class_path",
                       repr(key))
        return None
    owners, searched = _owners(checks, cls, argument, here, fixed, choices, when, path)
    if owners is None:
        return None
    name = rest[1]
    lacking = [(c, p) for c, p in owners if name not in components.class_arguments(c)]
    if lacking:
        owner = lacking[0][0]
        having = [p for c, p in owners if name in components.class_arguments(c)]
        hint = (f"only {', '.join(map(str, having))} of {here}.class_path takes it: add "
                f"`when: {{{searched}: {having[0]}}}`" if having and searched
                else suggest(name, list(components.class_arguments(owner))))
        checks.problem(path, f"an argument of {owner.__name__}" + (f" (a choice of {searched})" if searched else ""),
                       f"unknown parameter {name!r}", hint)
        return None
    inner = fixed.get("init_args") if isinstance(fixed, Mapping) else None
    inner_fixed = inner.get(name) if isinstance(inner, Mapping) else None
    found: list[Target] = []
    for owner, _ in owners:
        targets = _targets(checks, section, [*prefix, argument, "init_args"], owner, name, rest[2:], inner_fixed,
                           choices, when, path, key)
        if targets is None:
            return None
        found += [t for t in targets if t not in found]
    return found


def _owners(checks: FieldChecks, cls: type, argument: str, here: str, fixed: Any, choices: ClassChoices,
            when: Mapping[str, Any], path: KeyPath) -> tuple[list[tuple[type, Any]] | None, str | None]:
    """The classes the value of ``cls``'s ``argument`` may be, each with its class path as
    written, and the parameter that searches it (None when fixed)."""
    bases = components.class_bases(components.class_arguments(cls)[argument].annotation)
    if here in choices:
        searched, options = choices[here]
        owners = [(c, o) for o in options
                  if (c := spec_classes.resolve(checks, bases, o, path, report=False)) is not None]
        if not options or len(owners) < len(options):
            return None, searched  # the class_path entry is wrong itself, and reported there
        if searched is not None and searched in when:
            wanted = when[searched] if isinstance(when[searched], list) else [when[searched]]
            kept = [(c, o) for c, o in owners if o in wanted]
            if len(kept) < len(wanted):
                bad = next(w for w in wanted if w not in options)
                checks.problem((*path, "when", searched), f"a value {searched} can take: "
                               f"{', '.join(map(str, options))}", repr(bad))
                return None, searched
            owners = kept
        return owners, searched
    class_path = fixed if isinstance(fixed, str) else fixed.get("class_path") if isinstance(fixed, Mapping) else None
    if class_path is not None:
        owner = spec_classes.resolve(checks, bases, class_path, path, report=False)
        return ([(owner, class_path)] if owner is not None else None), None  # else the fixed value's check says why
    # jsonargparse's implicit class_path: the argument's own class, when it is one that takes arguments.
    if len(bases) == 1 and not getattr(bases[0], "__abstractmethods__", None) and components.class_arguments(bases[0]):
        return [(bases[0], f"{bases[0].__module__}.{bases[0].__qualname__}")], None
    written = format_path(spec_classes.spec_path(tuple(here.split("."))))
    expected = f"a class for {here}: a class_path at {written}, or {here}.class_path searched"
    if not any(p.expected == expected for p in checks.problems):  # once, not for every key under it
        checks.problem(path, expected, "none", f"the argument takes {spec_classes.class_names(bases) or 'any class'}")
    return None, None
