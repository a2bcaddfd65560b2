"""Trial schedulers (early stopping) by name, with their options and defaults.

Only the names and options live here, so a spec validates without importing Ray; the
Ray objects are built in :mod:`search.ray_backend`. Every scheduler's time unit is the epoch.
"""

from __future__ import annotations

SCHEDULERS: dict[str, dict[str, int | float]] = {
    # Successive halving, asynchronous: at each rung keep the top 1/reduction_factor.
    "asha": {"grace_period": 1, "reduction_factor": 3, "brackets": 1},
    "hyperband": {"reduction_factor": 3},
    # Stop a trial whose best result is worse than the median of the others at the same epoch.
    "median": {"grace_period": 1, "min_samples_required": 3},
    "none": {},
}
