"""`auto`: explore the whole space with TPE, then refine around the best with `local`.

The hand-off happens once ``switch_after`` trials have completed, or earlier when exploration
stalls: the best value has not improved for ``stall_after`` completed trials (after at least
MIN_EXPLORE of them). While `global` runs on its Gaussian process (expensive trials, a small
numeric space) there is no hand-off: the GP refines better than a trust region. Which phase a
trial is in is decided from the study's trials when the trial starts, so a resumed sweep picks
up in the same phase.
"""

from __future__ import annotations

from typing import Any

import optuna
from finesweep.search.space import SearchSpace
from finesweep.search.spec.typed import number_type
from finesweep.search.strategies._planning import Observed, history
from finesweep.search.strategies.global_tpe import GlobalSampler, make_global_sampler
from finesweep.search.strategies.local_search import LocalSampler
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

# The trial's phase ("global" or "local"), kept as a system attribute as Optuna's samplers keep
# theirs: the sweep's progress lines show it.
PHASE_ATTR = "finesweep:auto_phase"
# No stall counts before this many completed trials: the first ones are TPE's random start-up
# (8 by default), whose misses in a row say nothing about the model having run out of ideas.
MIN_EXPLORE = 10

class AutoSampler(optuna.samplers.BaseSampler):
    def __init__(self, space: SearchSpace, *, switch_after: int = 30, stall_after: int = 0,
                 seed: int | None = None) -> None:
        self._global = make_global_sampler(space, seed=seed)
        # Exploration's best is a good incumbent already: no random start-up.
        self._local = LocalSampler(space, n_startup_trials=0, restarts=False, seed=seed)
        self._switch_after = switch_after
        self._stall_after = stall_after
        self._phases: dict[int, optuna.samplers.BaseSampler] = {}

    def switched(self, observed: list[Observed]) -> bool:
        if len(observed) >= self._switch_after:
            return True
        if self._stall_after <= 0:
            return False
        best, since = float("inf"), 0
        for count, obs in enumerate(observed, start=1):
            best, since = (obs.loss, 0) if obs.loss < best else (best, since + 1)
            if count >= MIN_EXPLORE and since >= self._stall_after:
                return True
        return False

    def _phase(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        phase = self._phases.get(trial._trial_id)
        if phase is None:
            # Chosen by another sampler of this strategy (search/strategies/seeding.py asks a long-lived
            # one for the search space of trials that their own sampler began): read, not chosen.
            recorded = study._storage.get_trial(trial._trial_id).system_attrs.get(PHASE_ATTR)
            if recorded is not None:
                return self._local if recorded == "local" else self._global
            refine = self.switched(history(study)) and not self._global_uses_gp(study)
            phase = self._local if refine else self._global
            self._phases[trial._trial_id] = phase
        return phase

    def _global_uses_gp(self, study: optuna.Study) -> bool:
        """Whether exploration runs on the Gaussian process (trials are expensive and the
        space suits it). Then there is no hand-off: the GP models the whole space and already
        samples near the best where that pays, which a trust region around one point does
        worse (measured in benchmarks/results/gp_global.md)."""
        return isinstance(self._global, GlobalSampler) and self._global.use_gp(study)

    def reseed_rng(self) -> None:
        self._global.reseed_rng()
        self._local.reseed_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        phase = self._phase(study, trial)
        study._storage.set_trial_system_attr(trial._trial_id, PHASE_ATTR,
                                             "local" if phase is self._local else "global")
        phase.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._phase(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._phase(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._phase(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        phase = self._phases.pop(trial._trial_id, None) or self._global
        phase.after_trial(study, trial, state, values)


SwitchAfter = number_type(int, low=1)
StallAfter = number_type(int, low=0)  # 0: never


def make_auto_sampler(space: SearchSpace, *, switch_after: SwitchAfter = 30, stall_after: StallAfter = 0,
                      seed: int | None = None) -> optuna.samplers.BaseSampler:
    """Multivariate TPE (as `global`) until ``switch_after`` trials have completed or the best
    has not improved for ``stall_after`` of them (0: never), then `local` around the best."""
    return AutoSampler(space, switch_after=switch_after, stall_after=stall_after, seed=seed)
