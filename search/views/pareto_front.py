"""The Pareto front of a sweep of several objectives (or a constrained one), as the views show
it: `status` lists it, `export` writes ``pareto/rank_NN.yaml`` and a ``best.yaml`` chosen by a
rule, `report` draws it with the hypervolume over trials.

A trial's objective vector is the study's record (``values``); its constrained values and
every objective's value at its best epoch are the ``watched`` user attribute; its
feasibility is Optuna's own record of its constraint violations (``trial.constraints``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from finesweep.models.run import Direction
from finesweep.search.objectives.pareto import front, hypervolume, knee, reference_point, to_minimise, total_violation
from finesweep.search.run_dir.files import read_record
from finesweep.search.spec.fields import FieldChecks
from finesweep.search.spec.loading import parse_yaml_text
from finesweep.search.spec.objectives import Objective, check_select
from finesweep.search.spec.problems import SpecError
from finesweep.search.views.results import text_table

if TYPE_CHECKING:
    from pathlib import Path

    import optuna
    from finesweep.search.run_dir.files import RunInfo
    from finesweep.search.spec import SweepSpec
    from finesweep.search.views.results import SweepRecord

def record_objectives(study: optuna.Study, spec: SweepSpec) -> None:
    """What `status` on a bare storage URL reads: the objectives and constraints."""
    if spec.multi:
        study.set_user_attr("objectives", [[o.name, o.mode] for o in spec.objectives])
        study.set_user_attr("constraints", {k: dict(v) for k, v in spec.constraints.items()})


def objective_values(trial: optuna.trial.FrozenTrial, names: Sequence[str]) -> dict[str, float]:
    """Every objective's (and constrained value's) value at the trial's best epoch."""
    watched = trial.user_attrs.get("watched")
    values = {k: float(v) for k, v in watched.items()} if isinstance(watched, dict) else {}
    if trial.values is not None:
        values.update(zip(names, (float(v) for v in trial.values), strict=False))
    return values


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return total_violation(list(trial.constraints.values())) <= 0


@dataclass(frozen=True)
class Front:
    """The COMPLETE trials, the feasible ones no other feasible one dominates (``members``,
    by the first objective, best first) and the objectives as (name, mode)."""

    complete: list[optuna.trial.FrozenTrial]
    members: list[optuna.trial.FrozenTrial]
    objectives: tuple[tuple[str, str], ...]

    def point(self, trial: optuna.trial.FrozenTrial) -> tuple[float, ...]:
        values = objective_values(trial, self.names)
        return to_minimise([values[n] for n in self.names], self.modes)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [m for _, m in self.objectives]


def pareto_front(trials: Sequence[optuna.trial.FrozenTrial], objectives: tuple[tuple[str, str], ...]) -> Front:
    names = [n for n, _ in objectives]
    complete = [t for t in trials if t.state.name == "COMPLETE"
                and all(n in objective_values(t, names) for n in names)]
    shell = Front(complete, [], objectives)
    points = [shell.point(t) for t in complete]
    bad = [0.0 if feasible(t) else 1.0 for t in complete]
    members = [complete[i] for i in front(points, bad)]
    members.sort(key=lambda t: (shell.point(t)[0], t.number))
    return Front(complete, members, objectives)


def choose(found: Front, select: Mapping[str, Any] | None) -> tuple[optuna.trial.FrozenTrial, str]:
    """The front's trial that ``best.yaml`` holds, and the rule that chose it, in words:
    ``select: {objective: max|min, subject_to: {name: {max|min: x}}}``, else the knee."""
    if not found.members:
        raise ValueError("no feasible COMPLETE trial on the front")
    if len(found.names) == 1:  # one objective with constraints: its front is the best feasible trial
        return found.members[0], "the best trial that meets every constraint"
    if select:
        name = next(k for k in select if k != "subject_to")
        mode = select[name]
        bounds = select.get("subject_to") or {}
        text = "".join(f", {n} {'<=' if s == 'max' else '>='} {v:g}" for n, b in bounds.items() for s, v in b.items())

        def within(trial: optuna.trial.FrozenTrial) -> bool:
            values = objective_values(trial, found.names)
            return all(n in values and (values[n] <= v if s == "max" else values[n] >= v)
                       for n, b in bounds.items() for s, v in b.items())

        pool = [t for t in found.members if within(t)]
        rule = f"select: the {mode} {name} on the Pareto front{text}"
        if pool:
            direction = Direction(mode)
            return min(pool, key=lambda t: (direction.sort_key(objective_values(t, found.names)[name]), t.number)), rule
        rule += " (no front trial within the bounds: the knee instead)"
        return found.members[knee([found.point(t) for t in found.members])], rule
    return (found.members[knee([found.point(t) for t in found.members])],
            "the knee of the Pareto front (the smallest sum of objectives scaled to [0, 1] over the front)")


def front_lines(found: Front, chosen: optuna.trial.FrozenTrial | None = None, rule: str = "") -> list[str]:
    """`status`'s listing of the front: one row per trial, the chosen one marked."""
    infeasible = sum(not feasible(t) for t in found.complete)
    head = (f"Pareto front: {len(found.members)} of {len(found.complete)} COMPLETE trials"
            f"{f' ({infeasible} infeasible)' if infeasible else ''}; "
            + ", ".join(f"{n} ({m})" for n, m in found.objectives))
    rows = [[("* " if chosen is not None and t.number == chosen.number else "  ") + str(t.number),
             *(f"{objective_values(t, found.names)[n]:.4g}" for n in found.names),
             str(t.user_attrs.get("best_epoch", ""))] for t in found.members]
    table = text_table(["trial", *found.names, "best epoch"], rows).splitlines() if rows else []
    chosen_line = [f"* export chooses trial {chosen.number} for best.yaml, by {rule}"] if chosen is not None else []
    return [head, *table, *chosen_line]


def hypervolume_over_trials(trials: Sequence[optuna.trial.FrozenTrial], found: Front) -> list[tuple[int, float]]:
    """(trial number, hypervolume of the feasible front of the trials up to it), with the
    reference at the worst feasible value of each objective plus a tenth of its range."""
    feasible_points = [(t.number, found.point(t)) for t in found.complete if feasible(t)]
    if not feasible_points:
        return []
    reference = reference_point([p for _, p in feasible_points])
    curve, so_far = [], []
    by_number = dict(feasible_points)
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.number in by_number:
            so_far.append(by_number[trial.number])
        curve.append((trial.number, hypervolume(so_far, reference)))
    return curve


def selection(record: SweepRecord, text: str | None) -> RunInfo | None:
    """The run's info with `export --select`'s rule in place of the spec's, checked as the
    spec's `select:` is (a located SpecError otherwise)."""
    if text is None or record.info is None:
        return record.info
    value, marks, duplicates = parse_yaml_text("--select", text)
    checks = FieldChecks("--select", {("select", *k): v for k, v in marks.items()})
    checks.problems.extend(duplicates)
    chosen = check_select(checks, value, tuple(Objective(n, m) for n, m in record.objectives))
    if checks.problems:
        raise SpecError("--select", checks.problems)
    rule = {chosen.objective.name: chosen.objective.mode} if chosen.objective else {}
    return dataclasses.replace(record.info, select={**rule, "subject_to": {k: dict(v) for k, v in
                                                                         chosen.subject_to.items()}})


def chosen_line(best: Path) -> list[str]:
    """`export`'s line on which trial best.yaml holds and the rule that chose it (none for a
    single objective's plain best)."""
    record = read_record(best)
    if "selected_by" not in record:
        return []
    return [f"finesweep: {best.name}: trial {record.get('trial')}, chosen by {record['selected_by']}\n"]
