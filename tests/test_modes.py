"""A metric's direction: models/ knows min and max only, search/study speaks Optuna's words, and
a missing mode is refused or left to the study's record, never read as max."""

from __future__ import annotations

import finesweep.search.spec  # noqa: F401  (first: run_dir.files imported first meets spec -> views.export -> run_dir.files)
import optuna
import pytest
import yaml
from finesweep.models.run import Direction
from finesweep.search.run_dir import SPEC_COPY, STUDY_FILE
from finesweep.search.study import direction_of, optuna_direction
from finesweep.search.views.ensemble import ENSEMBLE_FORMAT, load_ensemble
from finesweep.search.views.results import ResultsError, load_sweep, read_spec_copy


@pytest.mark.parametrize("mode", [None, "", "maximize", "MAX", "up"])
def test_a_direction_is_min_or_max_and_nothing_else(mode):
    with pytest.raises(ValueError, match="mode: expected min or max"):
        Direction(mode)


def test_optuna_directions_convert_both_ways():
    for mode, name in (("max", "maximize"), ("min", "minimize")):
        assert optuna_direction(Direction(mode)) == name
        study = optuna.create_study(direction=name)
        assert direction_of(study.direction) == Direction(mode)
        assert direction_of(name.upper()) == Direction(mode)


def test_an_ensemble_file_without_a_mode_is_refused_not_read_as_max(tmp_path):
    path = tmp_path / "ensemble.yaml"
    path.write_text(yaml.safe_dump({"finesweep_ensemble": ENSEMBLE_FORMAT, "metric": "val_loss", "members": []}))
    with pytest.raises(ResultsError, match="mode"):
        load_ensemble(path)


def _run_without_mode(tmp_path, direction: str):
    """A run directory whose spec copy left the mode to the metric's name (val_loss: min)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / SPEC_COPY).write_text(yaml.safe_dump({
        "name": "guessed", "task": "image_classification", "metric": "val_loss",
        "space": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1}}}))
    study = optuna.create_study(study_name="guessed", storage=f"sqlite:///{run_dir / STUDY_FILE}",
                                direction=direction)
    study.add_trial(optuna.trial.create_trial(params={"learning_rate": 0.01}, value=0.5,
                                              distributions={"learning_rate": optuna.distributions.FloatDistribution(
                                                  0.001, 0.1)}))
    return run_dir


def test_a_spec_copy_without_a_mode_takes_the_studys_direction(tmp_path):
    run_dir = _run_without_mode(tmp_path, "minimize")
    assert read_spec_copy(run_dir).mode is None  # not guessed, and not max
    record = load_sweep(run_dir)
    assert record.mode == "min"
    assert record.objectives == (("val_loss", "min"),)
