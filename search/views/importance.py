"""Parameter importances of a sweep: what sets its best trials apart, and whether there are
enough trials to trust the order (`launch.py report` plots them)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from finesweep.models.run import Direction
from finesweep.search.study import optuna_direction

if TYPE_CHECKING:
    import optuna
    from finesweep.search.views.results import SweepRecord

# Fewer trials than this and the importances carry a warning. PED-ANOVA (Optuna's default
# evaluator) measures what sets the top 10% of trials (its target_quantile) apart from the
# rest, and Optuna's documentation asks for at least 5 trials in that top set: 50 trials.
# Each parameter also wants about 10 trials (the events-per-variable rule of thumb of
# regression): with fewer, a parameter with no effect can rank above one that matters by
# chance, and the bar chart looks just as confident either way.
IMPORTANCE_MIN_TRIALS = 50
IMPORTANCE_TRIALS_PER_PARAMETER = 10


@dataclass(frozen=True)
class Importances:
    """Parameter importances (empty when not computed), what they measure, and a warning
    when they rest on too few trials to trust their order."""

    values: dict[str, float]
    note: str
    trials: int = 0
    warning: str | None = None


def _best_so_far(values: dict[int, float], mode: str, up_to: int | None = None) -> float | None:
    kept = [v for step, v in values.items() if up_to is None or step <= up_to]
    if not kept:
        return None
    return Direction(mode).best(kept)


def importance_warning(trials: int, parameters: int) -> str | None:
    """A warning when ``trials`` are too few to rank ``parameters`` (see IMPORTANCE_MIN_TRIALS)."""
    wanted = max(IMPORTANCE_MIN_TRIALS, IMPORTANCE_TRIALS_PER_PARAMETER * parameters)
    if trials >= wanted:
        return None
    return (f"Few trials: {parameters} parameters ranked from {trials} trials, at least {wanted} wanted "
            f"(max of {IMPORTANCE_MIN_TRIALS} and {IMPORTANCE_TRIALS_PER_PARAMETER} per parameter); "
            "the order may be chance.")


def importances(record: SweepRecord, trials: list[optuna.trial.FrozenTrial]) -> Importances:
    """PED-ANOVA importances (Optuna's default evaluator, conditional parameters included).

    Under ASHA few trials complete, so the target is every COMPLETE and PRUNED trial's best
    value up to the last epoch that all of them reached; the note says what was measured
    (or why nothing was), the warning comes from :func:`importance_warning`.
    """
    # Imported here: Optuna is slow to import.
    import optuna

    scored = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED") and t.intermediate_values]
    if len(scored) < 3 or not record.param_names:
        return Importances({}, f"not computed: {len(scored)} trials with a value (at least 3 needed)", len(scored))
    epoch = min(max(t.intermediate_values) for t in scored)
    direction = optuna_direction(Direction(record.mode))
    proxy = optuna.create_study(direction=direction)
    for trial in scored:
        proxy.add_trial(optuna.trial.create_trial(
            params=trial.params, distributions=trial.distributions,
            value=_best_so_far(trial.intermediate_values, record.mode, epoch)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = optuna.importance.get_param_importances(proxy)
    except (RuntimeError, ValueError) as error:
        return Importances({}, f"not computed: {error}", len(scored))
    note = (f"PED-ANOVA importance for the best {record.metric} up to epoch {epoch}, "
            f"the last epoch all {len(scored)} COMPLETE and PRUNED trials reached")
    return Importances(dict(result), note, len(scored), importance_warning(len(scored), len(record.param_names)))
