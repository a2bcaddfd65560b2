"""How a finished Ray trial is recorded in the study."""

from __future__ import annotations

import math

import optuna
from finesweep.search.study import Outcome, fail_unfinished, redact, state_counts, tell, trial_outcome


def test_full_length_trial_is_complete_with_its_best_epoch():
    outcome = trial_outcome({"epoch": 5, "best_value": 0.97, "val_acc": 0.95}, False, 5)
    assert outcome == Outcome("COMPLETE", 0.97)


def test_trial_stopped_before_max_epochs_is_pruned_not_complete():
    assert trial_outcome({"epoch": 2, "best_value": 0.9}, False, 5).state == "PRUNED"


def test_error_and_non_finite_and_silent_trials_fail():
    assert trial_outcome({"epoch": 5, "best_value": 0.9}, True, 5, "boom").reason == "boom"
    assert trial_outcome({"epoch": 5, "best_value": math.nan}, False, 5).state == "FAIL"
    assert trial_outcome({"epoch": 5, "best_value": math.inf}, False, 5).state == "FAIL"
    assert trial_outcome(None, False, 5).state == "FAIL"


def test_tell_and_fail_unfinished_leave_no_trial_running():
    study = optuna.create_study(direction="maximize")
    complete, pruned, failed, left_running = (study.ask() for _ in range(4))
    pruned.report(0.5, step=1)
    tell(study, complete, Outcome("COMPLETE", 0.9))
    tell(study, pruned, Outcome("PRUNED", 0.5))
    tell(study, failed, Outcome("FAIL", None, "ValueError: bad"))
    assert fail_unfinished(study, "sweep ended") == 1
    assert state_counts(study) == {"COMPLETE": 1, "PRUNED": 1, "FAIL": 2}
    assert study.trials[2].user_attrs["fail_reason"] == "ValueError: bad"
    assert study.trials[3].user_attrs["fail_reason"] == "sweep ended"
    assert study.best_trial.number == complete.number


def test_redact_hides_passwords_only():
    assert redact("postgresql://me:secret@db/x") == "postgresql://me:***@db/x"
    assert redact("sqlite:///runs/a/study.db") == "sqlite:///runs/a/study.db"


def _snapshot(trials):
    return [(t.number, t.state.name, t.values, t.params, t.user_attrs, t.system_attrs, t.intermediate_values,
             t.datetime_start, t.datetime_complete) for t in trials]


def test_the_drivers_storage_reads_what_the_database_holds_and_a_second_driver_sees_it_all(tmp_path):
    """The driver keeps its running trials in memory (search/study/cache.py): after every kind of
    write, its view equals a fresh read of the database, and a driver started later (a resume)
    reads the same study, with the writes committed as they were made."""
    from finesweep.search.study import set_user_attrs
    from finesweep.search.study.cache import DriverStorage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=DriverStorage(optuna.storages.RDBStorage(url)),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    running = [study.ask() for _ in range(3)]
    for index, trial in enumerate(running):
        trial.suggest_float("x", 0.0, 1.0)
        set_user_attrs(trial, {"seed": index, "config": {"model": {"x": 1}}})
        trial.report(0.5 + index, step=1)
        study._storage.set_trial_system_attr(trial._trial_id, "engine", "tpe")
    assert study.get_trials(deepcopy=False)[0].user_attrs == {"seed": 0, "config": {"model": {"x": 1}}}
    study.tell(running[0], 1.0)
    tell(study, running[1], Outcome("FAIL", None, "boom"))
    fresh = optuna.load_study(study_name="s", storage=url)  # Optuna's own reader, as `status` uses
    assert _snapshot(study.get_trials(deepcopy=False)) == _snapshot(fresh.get_trials(deepcopy=False))
    assert [t.state.name for t in fresh.trials] == ["COMPLETE", "FAIL", "RUNNING"]
    assert fresh.trials[1].user_attrs["fail_reason"] == "boom"

    resumed = optuna.load_study(study_name="s", storage=DriverStorage(optuna.storages.RDBStorage(url)))
    tell(resumed, optuna.trial.Trial(resumed, resumed.trials[2]._trial_id), Outcome("COMPLETE", 0.25))
    again = optuna.load_study(study_name="s", storage=url)
    assert _snapshot(resumed.get_trials(deepcopy=False)) == _snapshot(again.get_trials(deepcopy=False))
    assert again.best_value == 0.25
