"""The sweep driver's view of its study: every write goes to the database at once, as before,
and reads come from memory.

Optuna's own cache over a database (``_CachedStorage``) keeps finished trials in memory but
reads every unfinished trial back from the database whenever a sampler or ``ask`` lists the
trials, since another process may have changed it. With 64 trials running that is 64 trials,
with all their attributes and values, re-read several times per suggestion (measured: 14 of
the driver's 28 CPU seconds for 200 trials). A sweep's driver is its study's only writer while
it runs (the run directory's lock, a shared study's lease), so it also keeps its own running
trials up to date in memory, and writes several attributes of a trial in one transaction.
A killed driver loses nothing: each write is committed before the call returns.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from optuna import distributions
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState


class DriverStorage(_CachedStorage):
    """Optuna's cached database storage for a process that is the study's only writer."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._newest_trial_id: dict[int, int] = {}

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        # Only trials this process has not seen (all of them the first time, e.g. on resume):
        # the ones it has seen change only through it.
        with self._lock:
            self._studies.setdefault(study_id, _StudyInfo())
            newest = self._newest_trial_id.get(study_id, -1)
            trials = self._backend._get_trials(study_id, states=None, included_trial_ids=set(),
                                               trial_id_greater_than=newest)
            if trials:
                self._add_trials_to_cache(study_id, trials)
                self._newest_trial_id[study_id] = max(newest, *(t._trial_id for t in trials))

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            cached = self._cached(trial_id)
        return cached if cached is not None else self._backend.get_trial(trial_id)

    def _cached(self, trial_id: int) -> FrozenTrial | None:
        where = self._trial_id_to_study_id_and_number.get(trial_id)
        if where is None:
            return None
        study_id, number = where
        if trial_id > self._newest_trial_id.get(study_id, -1):
            return None  # Created here but not yet listed: the first listing reads it whole.
        return self._studies[study_id].trials.get(number)

    def _update(self, trial_id: int, **fields: Any) -> None:
        """Replace the cached trial by a copy with ``fields`` merged in (dicts) or set;
        callers holding the old object keep an unchanged snapshot, as with Optuna's storages."""
        with self._lock:
            cached = self._cached(trial_id)
            if cached is None:
                return
            updated = copy.copy(cached)
            for name, value in fields.items():
                current = getattr(updated, name)
                setattr(updated, name, {**current, **value} if isinstance(current, dict) else value)
            self._studies[self._trial_id_to_study_id_and_number[trial_id][0]].trials[updated.number] = updated

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: distributions.BaseDistribution) -> None:
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        self._update(trial_id, _params={param_name: distribution.to_external_repr(param_value_internal)},
                     _distributions={param_name: distribution})

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._update(trial_id, intermediate_values={step: intermediate_value})

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.set_trial_user_attrs(trial_id, {key: value})

    def set_trial_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Set several user attributes of a trial in one transaction."""
        with _create_scoped_session(self._backend.scoped_session, True) as session:
            for key, value in attrs.items():
                self._backend._set_trial_attr_without_commit(session, models.TrialUserAttributeModel,
                                                             trial_id, key, value)
        self._update(trial_id, _user_attrs=dict(attrs))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_system_attr(trial_id, key, value)
        self._update(trial_id, _system_attrs={key: value})

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        changed = super().set_trial_state_values(trial_id, state, values)
        # State, values and the start or end time, as the database has them now.
        fresh = self._backend.get_trial(trial_id)
        with self._lock:
            if self._cached(trial_id) is not None:
                self._studies[self._trial_id_to_study_id_and_number[trial_id][0]].trials[fresh.number] = fresh
        return changed

