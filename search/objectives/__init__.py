"""A finished trial's objective vector and constraint violations, from its last report.

A trial reports, with every epoch, the values at its best epoch (by the first objective,
whose weights are kept) of every name the sweep reads, as ``best:<name>``; this module turns
the last report into what the study records. Plain Python: the ledger calls it and tests
script it without Ray.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from finesweep.search.objectives.pareto import violation

if TYPE_CHECKING:
    from finesweep.search.spec import SweepSpec
    from finesweep.search.study import Outcome

BEST_PREFIX = "best:"


def best_values(last: Mapping[str, Any]) -> dict[str, float]:
    """The watched values at the trial's best epoch, from its last report."""
    return {k[len(BEST_PREFIX):]: float(v) for k, v in last.items() if k.startswith(BEST_PREFIX)}


def with_objectives(outcome: Outcome, last: Mapping[str, Any],
                    spec: SweepSpec) -> tuple[Outcome, dict[str, float] | None]:
    """``outcome`` with every objective's value (a study of several objectives), and the
    trial's constraint violations by ``<name>.<max|min>`` (None without constraints). An objective the trial did not
    log, or one that is not finite, fails the trial: it could never be placed on a front."""
    if outcome.state == "FAIL":
        return outcome, None
    values = best_values(last)
    keys = [f"{name}.{side}" for name, bound in spec.constraints.items() for side in bound]
    constraints = dict(zip(keys, violation(values, spec.constraints), strict=True)) if keys else None
    if not spec.several_objectives:
        return outcome, constraints
    vector = []
    for objective in spec.objectives:
        value = values.get(objective.name)
        if value is None:
            return dataclasses.replace(outcome, state="FAIL", value=None,
                                       reason=f"objective {objective.name!r} was not logged"), None
        if not math.isfinite(value):
            return dataclasses.replace(outcome, state="FAIL", value=None,
                                       reason=f"non-finite objective {objective.name} {value}"), None
        vector.append(value)
    return dataclasses.replace(outcome, values=tuple(vector)), constraints
