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
    "hyperband": {"reduction_factor": 3},
    # Stop a trial whose best result is worse than the median of the others at the same epoch.
    "median": {"grace_period": 1, "min_samples_required": 3},
    "none": {},
}


def scheduler_arguments(name: str, options: Mapping[str, Any], max_epochs: int) -> dict[str, Any]:
    """Keyword arguments of Ray Tune's scheduler ``name``: the spec's ``options`` over the
    defaults above, in epochs (Tune's ``training_iteration``: one report per epoch)."""
    given = {**SCHEDULERS[name], **options}
    epochs = {"time_attr": "training_iteration"}
    if name == "asha":
        return {**epochs, "max_t": max_epochs, "grace_period": min(int(given["grace_period"]), max_epochs),
                "reduction_factor": given["reduction_factor"], "brackets": int(given["brackets"])}
    if name == "hyperband":
        return {**epochs, "max_t": max_epochs, "reduction_factor": given["reduction_factor"]}
    if name == "median":
        return {**epochs, "grace_period": given["grace_period"],
                "min_samples_required": int(given["min_samples_required"])}
    return {}
