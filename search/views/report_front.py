"""`report`'s pages for several objectives: the Pareto front (dominated and infeasible trials
marked, the trial `export` chooses starred) and the hypervolume of the front over trials."""

from __future__ import annotations

from typing import TYPE_CHECKING

from finesweep.search.views.pareto_front import (
    Front,
    choose,
    feasible,
    hypervolume_over_trials,
    objective_values,
    pareto_front,
)
from finesweep.search.views.report import Plot, _figure, _png

if TYPE_CHECKING:
    import optuna
    from finesweep.search.views.report import Plot
    from finesweep.search.views.results import SweepRecord
    from matplotlib.figure import Figure


def front_plots(record: SweepRecord, trials: list[optuna.trial.FrozenTrial]) -> list[Plot]:
    """The front and hypervolume plots; none for one objective without constraints."""
    if not record.multi:
        return []
    found = pareto_front(trials, record.objectives)
    if not found.complete:
        return []
    chosen, rule = choose(found, record.info.select if record.info is not None else None) if found.members \
        else (None, "")
    x, y = (found.names + found.names)[:2] if len(found.names) > 1 else (found.names[0], None)
    shown = f"{x} against {y}" if y else x
    plots = [Plot("pareto_front", "Pareto front", f"COMPLETE trials by {shown}: the front (feasible and not "
                  "dominated) joined by a line, dominated trials in grey, trials that break a constraint as "
                  f"red crosses; the star is the trial export chooses for best.yaml, by {rule}."
                  + (" Only the first two objectives are drawn." if len(found.names) > 2 else ""),
                  _png(plot_front(found, chosen, x, y)))]
    curve = hypervolume_over_trials(trials, found)
    if curve and len(found.names) > 1:
        plots.append(Plot("hypervolume", "Hypervolume over trials",
                          "The hypervolume of the feasible front of the trials so far (objectives in "
                          "minimisation form; reference: each objective's worst feasible value plus a tenth "
                          "of its range). It grows when a trial widens or pushes the front.",
                          _png(plot_hypervolume(curve))))
    return plots


def plot_front(found: Front, chosen: optuna.trial.FrozenTrial | None, x: str, y: str | None) -> Figure:
    figure = _figure()
    axes = figure.add_subplot()
    members = {t.number for t in found.members}

    def coords(group: list[optuna.trial.FrozenTrial]) -> tuple[list[float], list[float]]:
        values = [objective_values(t, found.names) for t in group]
        return [v[x] for v in values], [v[y] if y else 0.0 for v in values]

    dominated = [t for t in found.complete if feasible(t) and t.number not in members]
    infeasible = [t for t in found.complete if not feasible(t)]
    if dominated:
        axes.scatter(*coords(dominated), color="#999", label=f"dominated ({len(dominated)})")
    if infeasible:
        axes.scatter(*coords(infeasible), color="#c22", marker="x", label=f"infeasible ({len(infeasible)})")
    if found.members:
        ordered = sorted(found.members, key=lambda t: objective_values(t, found.names)[x])
        axes.plot(*coords(ordered), color="#1f5fbf", marker="o", label=f"Pareto front ({len(ordered)})")
        for trial, px, py in zip(ordered, *coords(ordered), strict=True):
            axes.annotate(str(trial.number), (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if chosen is not None:
        axes.scatter(*coords([chosen]), marker="*", s=250, color="#f5a300", zorder=3,
                     label=f"best.yaml (trial {chosen.number})")
    modes = dict(found.objectives)
    axes.set_xlabel(f"{x} ({modes[x]})")
    if y:
        axes.set_ylabel(f"{y} ({modes[y]})")
    axes.legend(fontsize=8)
    return figure


def plot_hypervolume(curve: list[tuple[int, float]]) -> Figure:
    figure = _figure(8.0, 3.5)
    axes = figure.add_subplot()
    axes.step([n for n, _ in curve], [v for _, v in curve], where="post", color="#1f5fbf")
    axes.set_xlabel("trial")
    axes.set_ylabel("hypervolume of the front so far")
    return figure
