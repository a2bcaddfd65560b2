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
