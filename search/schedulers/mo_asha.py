"""Multi-objective asynchronous successive halving (MO-ASHA, Schmucker et al. 2021), Ray-free.

ASHA keeps the top 1/reduction_factor of the trials that reached a rung by one metric; with
several objectives there is no single "top", so the trials recorded at a rung are ranked by
non-dominated sorting (constrained domination: feasible first) with NSGA-II's crowding
distance breaking ties within a front, and a trial goes on while it is among the first
ceil(n / reduction_factor) of that order. The Ray adapter (:mod:`search.ray_backend`) only
forwards each epoch's report here and turns the answer into CONTINUE or STOP.

``brackets`` > 1 is asynchronous Hyperband: bracket b's rungs start at grace_period x
reduction_factor^b, and trials are dealt to brackets in turn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from finesweep.search.objectives.pareto import best_first, to_minimise, total_violation, violation
from finesweep.search.schedulers import scheduler_arguments

if TYPE_CHECKING:
    from finesweep.search.spec import SweepSpec


@dataclass
class _Bracket:
    rungs: list[int]
    # rung epoch -> trial id -> (objective point in minimisation form, total violation)
    recorded: dict[int, dict[str, tuple[tuple[float, ...], float]]] = field(default_factory=dict)


class MultiObjectiveRungs:
    """Decides, epoch by epoch, whether a trial goes on; ``points`` are in minimisation form."""

    def __init__(self, *, max_t: int, grace_period: int = 1, reduction_factor: float = 3,
                 brackets: int = 1) -> None:
        if reduction_factor <= 1:
            raise ValueError(f"`reduction_factor > 1` must hold, but got reduction_factor={reduction_factor}")
        self.reduction_factor = reduction_factor
        self.brackets: list[_Bracket] = []
        for b in range(max(1, brackets)):
            rungs, t = [], grace_period * reduction_factor ** b
            while t < max_t:
                rungs.append(int(round(t)))
                t *= reduction_factor
            self.brackets.append(_Bracket(rungs))
        self._bracket_of: dict[str, int] = {}

    def bracket(self, trial_id: str) -> _Bracket:
        if trial_id not in self._bracket_of:
            self._bracket_of[trial_id] = len(self._bracket_of) % len(self.brackets)
        return self.brackets[self._bracket_of[trial_id]]

    def on_result(self, trial_id: str, epoch: int, point: Sequence[float], violation: float = 0.0) -> bool:
        """True: the trial goes on. Judged only at a rung's epoch, once per rung; a trial's
        value there is kept, so a trial judged later compares against every earlier one."""
        bracket = self.bracket(trial_id)
        if epoch not in bracket.rungs:
            return True
        at_rung = bracket.recorded.setdefault(epoch, {})
        if trial_id in at_rung:
            return True  # A re-reported epoch (a trial going on from its state) is judged once.
        at_rung[trial_id] = (tuple(float(x) for x in point), float(violation))
        ids = list(at_rung)
        order = best_first([at_rung[i][0] for i in ids], [at_rung[i][1] for i in ids])
        kept = max(1, math.ceil(len(ids) / self.reduction_factor))
        return ids.index(trial_id) in order[:kept]


class SweepRungs:
    """MO-ASHA for one sweep: reads each report's objectives (and constrained values) by the
    spec's names; ``asha`` or ``hyperband`` with the spec's options, in epochs."""

    def __init__(self, spec: SweepSpec) -> None:
        # The rungs Ray's single-objective scheduler of the same name and options would use.
        rungs = scheduler_arguments(spec.scheduler.name, spec.scheduler.options, spec.budget.max_epochs)
        self.rungs = MultiObjectiveRungs(max_t=rungs["max_t"], grace_period=rungs["grace_period"],
                                         reduction_factor=float(rungs["reduction_factor"]), brackets=rungs["brackets"])
        self.names = [o.name for o in spec.objectives]
        self.modes = list(spec.modes)
        self.constraints: Mapping[str, Mapping[str, float]] = spec.constraints

    def goes_on(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Whether the trial that sent ``result`` trains on; a report without every objective
        is not judged (the trial fails on its own for the objective it never logged)."""
        if "epoch" not in result or any(result.get(n) is None for n in self.names):
            return True
        point = to_minimise([float(result[n]) for n in self.names], self.modes)
        if any(math.isnan(x) for x in point):
            return True  # A NaN fails the trial at its end: nothing to rank it by now.
        bad = total_violation(violation(result, self.constraints)) if self.constraints else 0.0
        return self.rungs.on_result(trial_id, int(result["epoch"]), point, bad)
