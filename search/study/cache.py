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

import contextlib
import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy
from optuna import distributions
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState


class DriverStorage(_CachedStorage):
    """Optuna's cached database storage for a process that is the study's only writer."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._newest_trial_id: dict[int, int] = {}

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        # Every trial once (the first listing, e.g. on resume); after that nothing: the trials
        # change, and new ones appear, only through this process.
        if study_id in self._newest_trial_id:
            return
        with self._lock:
            self._studies.setdefault(study_id, _StudyInfo())
            trials = self._backend._get_trials(study_id, states=None, included_trial_ids=set(),
                                               trial_id_greater_than=-1)
            self._add_trials_to_cache(study_id, trials)
            self._newest_trial_id[study_id] = max((t._trial_id for t in trials), default=-1)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        self._read_trials_from_remote_storage(study_id)
        # The base class caches the trial as the database returned it on creation.
        trial_id = super().create_new_trial(study_id, template_trial)
        with self._lock:
            self._newest_trial_id[study_id] = max(self._newest_trial_id[study_id], trial_id)
        return trial_id

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
        where = self._trial_id_to_study_id_and_number.get(trial_id)
        known = self._studies[where[0]].param_distribution.get(param_name) if where else None
        if known is None:  # The first time: Optuna's own path checks it against the database.
            super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        else:
            table = models.TrialParamModel.__table__
            with self._updatable(trial_id) as connection:
                # After the state check, as Optuna's storages: a finished trial is refused as such.
                distributions.check_distribution_compatibility(known, distribution)
                connection.execute(table.insert(), [{
                    "trial_id": trial_id, "param_name": param_name, "param_value": param_value_internal,
                    "distribution_json": distributions.distribution_to_json(distribution)}])
        self._update(trial_id, _params={param_name: distribution.to_external_repr(param_value_internal)},
                     _distributions={param_name: distribution})

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        table = models.TrialIntermediateValueModel.__table__
        stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(intermediate_value)
        with self._updatable(trial_id) as connection:
            connection.execute(table.delete().where(table.c.trial_id == trial_id, table.c.step == step))
            connection.execute(table.insert(), [{"trial_id": trial_id, "step": step, "intermediate_value": stored,
                                                 "intermediate_value_type": kind}])
        self._update(trial_id, intermediate_values={step: intermediate_value})

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.set_trial_user_attrs(trial_id, {key: value})

    def set_trial_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Set several user attributes of a trial in one transaction."""
        table = models.TrialUserAttributeModel.__table__
        with self._updatable(trial_id) as connection:
            connection.execute(table.delete().where(table.c.trial_id == trial_id, table.c.key.in_(list(attrs))))
            connection.execute(table.insert(), [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                                                for key, value in attrs.items()])
        self._update(trial_id, _user_attrs=dict(attrs))

    @contextlib.contextmanager
    def _updatable(self, trial_id: int) -> Iterator[Any]:
        """One transaction on a trial that may still change (Optuna's rule: not finished).
        Plain SQL statements: Optuna's ORM path costs ~2 ms of CPU per attribute here."""
        trials = models.TrialModel.__table__
        with self._backend.engine.begin() as connection:
            state = connection.execute(
                sqlalchemy.select(trials.c.state).where(trials.c.trial_id == trial_id)).scalar_one_or_none()
            if state is None:
                raise KeyError(f"no trial with trial_id {trial_id}")
            self._backend.check_trial_is_updatable(trial_id, state)
            yield connection

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_system_attr(trial_id, key, value)
        self._update(trial_id, _system_attrs={key: value})

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        changed = super().set_trial_state_values(trial_id, state, values)
        if not changed:  # Another process took the waiting trial first: read it back whole.
            fresh = self._backend.get_trial(trial_id)
            with self._lock:
                if self._cached(trial_id) is not None:
                    self._studies[self._trial_id_to_study_id_and_number[trial_id][0]].trials[fresh.number] = fresh
            return changed
        # The start and end times as the database holds them now.
        trials = models.TrialModel.__table__
        with self._backend.engine.connect() as connection:
            started, completed = connection.execute(
                sqlalchemy.select(trials.c.datetime_start, trials.c.datetime_complete)
                .where(trials.c.trial_id == trial_id)).one()
        self._update(trial_id, state=state, _values=list(values) if values is not None else None,
                     _datetime_start=started, datetime_complete=completed)
        return changed
