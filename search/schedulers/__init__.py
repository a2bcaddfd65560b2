"""Trial schedulers (early stopping) by name, with their options and defaults.

Only the names and options live here, so a spec validates without importing Ray; the
Ray objects are built in :mod:`search.ray_backend`. Every scheduler's time unit is the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCHEDULERS: dict[str, dict[str, int | float]] = {
    # Successive halving, asynchronous: at each rung keep the top 1/reduction_factor.
    "asha": {"grace_period": 1, "reduction_factor": 3, "brackets": 1},
    # Hyperband, asynchronous (Li et al. 2020): ASHA over all of Hyperband's brackets, each
    # bracket's first rung grace_period x reduction_factor^k epochs, a trial's bracket drawn
    # with more weight on the more aggressive ones. Ray's synchronous HyperBandScheduler waits
    # for a bracket to fill with paused trials, which the concurrency limit never lets happen:
    # it pruned nothing at all in the replay benchmark (docs/benchmarks.md).
    "hyperband": {"grace_period": 1, "reduction_factor": 3},
    # Stop a trial whose best result is worse than the median of the others at the same epoch.
    "median": {"grace_period": 1, "min_samples_required": 3},
    "none": {},
}


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
