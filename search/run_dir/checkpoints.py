"""Checkpoint retention: keep the weights of the best trials, remove the rest.

Every trial saves ``trials/trial_NNNN/model.pt`` while it trains (its best epoch's weights,
a plain state dict). Once the sweep has ended only the best ``keep_best`` trials of
:func:`search.views.results.rank_candidates` keep theirs: exactly the members that ``launch.py
ensemble --top-k K`` (K <= keep_best) and ``best.yaml`` point to.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from finesweep.search.run_dir import checkpoint_path
from finesweep.search.spec import DEFAULT_KEEP_BEST
from finesweep.search.study import ranked_trials_of
from finesweep.search.views.results import rank_candidates

if TYPE_CHECKING:
    import optuna



def apply_retention(run_dir: str | Path, study: optuna.Study, mode: str,
                    keep_best: int | None = DEFAULT_KEEP_BEST) -> list[Path]:
    """Delete the checkpoints of every finished trial but the best ``keep_best``; ``None``
    keeps all. Returns the removed paths.

    Meant for the end of a sweep: only finished trials lose their checkpoints, and which
    trials are the best K can change until the last one has finished.
    """
    if keep_best is None:
        return []
    if keep_best < 1:
        raise ValueError(f"keep_best must be at least 1 (the best trial's weights back best.yaml), "
                         f"but got {keep_best}")
    trials = study.get_trials(deepcopy=False)
    kept = {trial.number for trial in rank_candidates(trials, mode)[:keep_best]}
    # best.yaml names the best COMPLETE trial, which pruned trials may outrank above.
    complete = ranked_trials_of(trials, mode)
    if complete:
        kept.add(complete[0].number)
    removed = []
    for trial in trials:
        path = checkpoint_path(run_dir, trial.number)
        if trial.number not in kept and trial.state.is_finished() and path.exists():
            path.unlink()
            removed.append(path)
    return removed
