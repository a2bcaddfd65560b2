"""The spec's objectives, constraints and Pareto selection rule, checked with located problems.

``objectives: {val_acc: max, latency_ms: min}`` (ordered) replaces ``metric:``/``mode:`` for a
sweep of several objectives; the first objective is the one that picks each trial's best
epoch (whose weights are kept), so the spec's ``metric``/``mode`` stay the first objective's
and every single-objective reader works unchanged. ``constraints: {n_params: {max: 1e5}}``
bounds logged values, with one objective or several. ``select: {val_acc: max, subject_to:
{latency_ms: {max: 5}}}`` says which Pareto trial ``export`` writes as ``best.yaml``; without
it the knee of the front is chosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from finesweep.search.spec.components import known_metrics
from finesweep.search.spec.problems import describe, did_you_mean

if TYPE_CHECKING:
    from finesweep.search.spec.components import Component
    from finesweep.search.spec.fields import FieldChecks

# Strategies that work with several objectives (or constraints), and why the others do not.
MULTI_OBJECTIVE_STRATEGIES = ("global", "heuristic", "random", "grid", "local with start_from")
SINGLE_OBJECTIVE_ONLY = {
    "local": "with several objectives there is no single best to walk around: give `options: {start_from: "
             "runs/x/pareto/rank_NN.yaml}` (a chosen Pareto point); with constraints and one objective it "
             "would ignore them",
    "annealing": "its acceptance rule compares one value",
    "genetic": "it breeds from the best by one value; `heuristic` runs NSGA-II for several objectives",
    "auto": "its phases hand over on one value's progress",
}
SINGLE_OBJECTIVE_SCHEDULERS = {
    "median": "the median of several objectives is not an order; `asha` or `hyperband` rank each rung "
              "by non-dominated sorting (MO-ASHA)",
}


@dataclass(frozen=True)
class Objective:
    name: str
    mode: str  # "max" or "min"


@dataclass(frozen=True)
class Selection:
    """How ``export`` picks ``best.yaml`` among the Pareto trials: the best ``objective``
    among those within ``subject_to``; None: the knee of the front."""

    objective: Objective | None = None
    subject_to: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def describe(self) -> str:
        if self.objective is None:
            return "the knee of the Pareto front (the trial with the smallest sum of objectives scaled to [0, 1])"
        bounds = "".join(f", {n} {'<=' if s == 'max' else '>='} {v:g}"
                         for n, b in self.subject_to.items() for s, v in b.items())
        return f"the {self.objective.mode} {self.objective.name} on the Pareto front{bounds}"


def check_objectives(checks: FieldChecks, model: Component | None, data: Mapping[str, Any]) -> tuple[Objective, ...]:
    """The objectives in order, from ``objectives:``; empty when the spec names ``metric:``."""
    if "objectives" not in data:
        return ()
    for single in ("metric", "mode"):
        if single in data:
            checks.problem((single,), "either `metric:`/`mode:` (one objective) or `objectives:` (several)",
                           "both", "write the metric as the first entry of `objectives:`")
    value = data["objectives"]
    if not isinstance(value, dict) or not value:
        checks.problem(("objectives",), "a mapping of logged names to max or min ({val_acc: max, n_params: min})",
                       describe(value))
        return ()
    known = known_metrics(model)
    objectives = []
    for name, mode in value.items():
        if not isinstance(name, str) or not name:
            checks.problem(("objectives", name), "the name of a value the model logs", describe(name))
            continue
        if checks.string(mode, ("objectives", name), ["max", "min"]) is None:
            continue
        # A name a built-in model does not report may come from a callback (ModelCost's
        # n_params): the dry run checks it is logged. A near miss of a reported one is a typo.
        hint = did_you_mean(name, list(known)) if known is not None and name not in known else ""
        if hint:
            checks.problem(("objectives", name), f"a metric that the model reports: {', '.join(known or ())}",
                           repr(name), hint)
            continue
        if known is not None and name in known and known[name] != mode:
            checks.problem(("objectives", name), f"{known[name]} ({name} improves that way)", repr(mode))
            continue
        objectives.append(Objective(name, mode))
    return tuple(objectives)


def check_bounds(checks: FieldChecks, value: Any, path: tuple[Any, ...]) -> dict[str, dict[str, float]]:
    """``{name: {max: x} | {min: x} | {min: a, max: b}}``: bounds on logged values."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        checks.problem(path, "a mapping of logged names to bounds ({n_params: {max: 100000}})", describe(value))
        return {}
    bounds: dict[str, dict[str, float]] = {}
    for name, bound in value.items():
        at = (*path, name)
        if not isinstance(bound, dict) or not bound:
            checks.problem(at, "a bound {max: X} or {min: X}", describe(bound))
            continue
        entry = checks.mapping(bound, at, ["max", "min"])
        limits = {side: checks.number(v, (*at, side)) for side, v in entry.items()}
        if any(v is None for v in limits.values()) or not limits:
            continue
        if "max" in limits and "min" in limits and limits["min"] > limits["max"]:
            checks.problem(at, "`min <= max`", f"min={limits['min']:g}, max={limits['max']:g}")
            continue
        bounds[str(name)] = {side: float(v) for side, v in limits.items()}
    return bounds


def check_select(checks: FieldChecks, value: Any, objectives: tuple[Objective, ...]) -> Selection:
    """``select: {objective: max|min, subject_to: {...}}``; every key but ``subject_to`` names
    one objective."""
    if value is None:
        return Selection()
    if not isinstance(value, dict):
        checks.problem(("select",), "a mapping ({val_acc: max, subject_to: {latency_ms: {max: 5}}})",
                       describe(value))
        return Selection()
    if len(objectives) < 2:
        checks.problem(("select",), "`select:` only with several `objectives:`", "one objective",
                       "with one objective the best trial is the best by it")
        return Selection()
    names = [o.name for o in objectives]
    chosen = [k for k in value if k != "subject_to"]
    subject_to = check_bounds(checks, value.get("subject_to"), ("select", "subject_to"))
    if len(chosen) != 1:
        checks.problem(("select",), "one objective to optimise (and optionally `subject_to:`)",
                       f"{len(chosen)} keys besides subject_to")
        return Selection(None, subject_to)
    name = chosen[0]
    if name not in names:
        checks.problem(("select", name), f"one of the objectives {', '.join(names)}", repr(name),
                       did_you_mean(str(name), names))
        return Selection(None, subject_to)
    mode = checks.string(value[name], ("select", name), ["max", "min"])
    return Selection(Objective(name, mode or "max"), subject_to)


def check_strategy_and_scheduler(checks: FieldChecks, strategy: str, scheduler: str, several: bool,
                                 constrained: bool, anchored: bool = False) -> None:
    """Refuse a strategy or scheduler that cannot handle several objectives (or constraints);
    ``anchored``: `local` was given a start point, around which it scalarises several objectives."""
    if strategy == "local" and several and anchored:
        pass
    elif (several or constrained) and strategy in SINGLE_OBJECTIVE_ONLY:
        why = "several objectives" if several else "constraints"
        checks.problem(("strategy", "name"), f"a strategy that handles {why}: "
                       f"{', '.join(MULTI_OBJECTIVE_STRATEGIES)}", repr(strategy), SINGLE_OBJECTIVE_ONLY[strategy])
    if several and scheduler in SINGLE_OBJECTIVE_SCHEDULERS:
        checks.problem(("scheduler", "name"), "a scheduler that ranks several objectives: asha, hyperband, none",
                       repr(scheduler), SINGLE_OBJECTIVE_SCHEDULERS[scheduler])
