"""Trial schedulers (early stopping) by name, with their options and defaults.

Only the names and options live here, so a spec validates without importing Ray; the
Ray objects are built in :mod:`search.ray_backend`. Every scheduler's time unit is the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from finesweep.search.spec.typed import number_type, options_of

# Each scheduler's options, typed: a spec's values are checked against these by jsonargparse.
# Ray asserts reduction_factor > 1 (HyperBand divides by its logarithm).
ReductionFactor = number_type(int, low=2)
PositiveInt = number_type(int, low=1)


@dataclass(frozen=True)
class AshaOptions:
    """Successive halving, asynchronous: at each rung keep the top 1/reduction_factor."""

    grace_period: PositiveInt = 1
    reduction_factor: ReductionFactor = 3
    brackets: PositiveInt = 1


@dataclass(frozen=True)
class HyperbandOptions:
    """Hyperband, asynchronous (Li et al. 2020): ASHA over all of Hyperband's brackets, each
    bracket's first rung grace_period x reduction_factor^k epochs, a trial's bracket drawn
    with more weight on the more aggressive ones. Ray's synchronous HyperBandScheduler waits
    for a bracket to fill with paused trials, which the concurrency limit never lets happen:
    it pruned nothing at all in the replay benchmark (docs/benchmarks.md)."""

    grace_period: PositiveInt = 1
    reduction_factor: ReductionFactor = 3


@dataclass(frozen=True)
class MedianOptions:
    """Stop a trial whose best result is worse than the median of the others at the same epoch."""

    grace_period: PositiveInt = 1
    min_samples_required: PositiveInt = 3


@dataclass(frozen=True)
class NoOptions:
    """No early stopping: every trial runs its epochs."""


SCHEDULER_OPTIONS: dict[str, type] = {"asha": AshaOptions, "hyperband": HyperbandOptions,
                                      "median": MedianOptions, "none": NoOptions}
# Name -> {option: default}.
SCHEDULERS: dict[str, dict[str, Any]] = {name: options_of(cls) for name, cls in SCHEDULER_OPTIONS.items()}


def scheduler_arguments(name: str, options: Mapping[str, Any], max_epochs: int) -> dict[str, Any]:
    """Keyword arguments of Ray Tune's scheduler ``name``: the spec's ``options`` over the
    defaults above, in epochs: the ``epoch`` every report carries, not Tune's count of reports
    (``training_iteration``), which starts over when a trial goes on from its training state."""
    given = {**SCHEDULERS[name], **options}
    epochs = {"time_attr": "epoch"}
    if name == "asha":
        return {**epochs, "max_t": max_epochs, "grace_period": min(int(given["grace_period"]), max_epochs),
                "reduction_factor": given["reduction_factor"], "brackets": int(given["brackets"])}
    if name == "hyperband":
        grace = min(int(given["grace_period"]), max_epochs)
        return {**epochs, "max_t": max_epochs, "grace_period": grace, "reduction_factor": given["reduction_factor"],
                "brackets": hyperband_brackets(max_epochs, grace, given["reduction_factor"])}
    if name == "median":
        return {**epochs, "grace_period": given["grace_period"],
                "min_samples_required": int(given["min_samples_required"])}
    return {}


def hyperband_brackets(max_epochs: int, grace_period: int, reduction_factor: float) -> int:
    """How many brackets Hyperband has for trials of ``grace_period`` to ``max_epochs`` epochs:
    one per possible first rung grace_period x reduction_factor^k below max_epochs."""
    brackets = 1
    while grace_period * reduction_factor ** brackets < max_epochs:
        brackets += 1
    return brackets
