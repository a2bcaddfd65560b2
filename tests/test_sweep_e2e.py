"""Real sweeps end to end: real Ray, real Lightning, real SQLite, real TensorBoard files."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
import yaml
from finesweep.search.cli import main as cli_main
from finesweep.search.spec import parse_spec
from finesweep.search.study import load_study, state_counts
from finesweep.search.sweep import run_sweep
from finesweep.search.tensorboard_log import STATE_COLUMN, final_metric_tag
from finesweep.search.views.export import read_record
from finesweep.search.views.retrain import retrain
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

pytestmark = pytest.mark.slow

SPEC = """
name: e2e
task: image_classification
metric: val_acc
space:
  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  optimizer: {type: categorical, choices: [adam, sgd]}
  momentum: {type: float, low: 0.8, high: 0.95, when: {optimizer: sgd}}
  channels: {type: int, low: 8, high: 16}
  conv_layers: 1
  hidden_units: 32
strategy: {name: global, seed: 3}
scheduler: {name: asha, options: {grace_period: 1, reduction_factor: 2}}
budget: {trials: 6, max_epochs: 2}
resources: {cpus: 1, concurrency: 2}
"""


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, local_ray):
    root = tmp_path_factory.mktemp("e2e")
    spec_path = root / "e2e.yaml"
    spec_path.write_text(SPEC)
    spec = parse_spec(spec_path)
    result = run_sweep(spec, root / "run")
    return spec, result


def _read_run(path):
    accumulator = event_accumulator.EventAccumulator(str(path), size_guidance={"tensors": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def test_study_records_every_trial_in_a_final_state(finished_sweep):
    spec, result = finished_sweep
    study = load_study(spec.name, result.storage)
    counts = state_counts(study)
    assert counts.get("RUNNING", 0) == 0
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) + counts.get("FAIL", 0) == 6
    assert counts.get("COMPLETE", 0) >= 1
    # reduction_factor 2 over 2 epochs: ASHA must stop some trials after epoch 1.
    assert counts.get("PRUNED", 0) >= 1
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert list(trial.intermediate_values) == [1], "a pruned trial keeps its epoch-1 value"
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert sorted(trial.intermediate_values) == [1, 2]
            assert trial.value == pytest.approx(max(trial.intermediate_values.values()))
        assert ("momentum" in trial.params) == (trial.params["optimizer"] == "sgd")


def test_tensorboard_has_one_run_per_trial_with_scalars_and_hparams(finished_sweep):
    spec, result = finished_sweep
    study = load_study(spec.name, result.storage)
    board = result.run_dir / "tensorboard"
    runs = sorted(p.name for p in board.iterdir() if p.is_dir())
    assert runs == [f"trial_{t.number:04d}" for t in study.trials]
    for trial in study.trials:
        run = _read_run(board / f"trial_{trial.number:04d}")
        epochs = [event.step for event in run.Scalars("val_acc")]
        assert epochs == sorted(trial.intermediate_values)
        assert {"train_loss", "val_loss"} <= set(run.Tags()["scalars"])
        content = run.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
        start = hparams_metadata.parse_session_start_info_plugin_data(
            content[hparams_metadata.SESSION_START_INFO_TAG])
        columns = set(start.hparams)
        assert columns == {*spec.space.names, STATE_COLUMN}, "every trial has the same columns"
        assert start.hparams[STATE_COLUMN].string_value == trial.state.name
        if trial.params["optimizer"] != "sgd":
            assert start.hparams["momentum"].string_value == "inactive"
        if trial.state.name != "FAIL":
            final = run.Scalars(final_metric_tag(spec.metric))[-1].value
            assert final == pytest.approx(max(trial.intermediate_values.values()), abs=1e-6)
    experiment = _read_run(board)
    assert hparams_metadata.EXPERIMENT_TAG in experiment.PluginTagToContent(hparams_metadata.PLUGIN_NAME)


def test_best_yaml_round_trips_through_train(finished_sweep, tmp_path):
    spec, result = finished_sweep
    exported = read_record(result.run_dir / "best.yaml")
    config = yaml.safe_load((result.run_dir / "best.yaml").read_text())
    assert exported["value"] == pytest.approx(result.best_value)
    assert exported["trial"] == result.best_trial
    # A LightningCLI config: the fixed values and the sampled ones, nothing the trial did not use
    # (momentum only where the optimizer was sgd).
    assert set(config) == {"seed_everything", "trainer", "model", "data"}
    init_args = config["model"]["init_args"]
    assert init_args["hidden_units"] == 32 and init_args["conv_layers"] == 1
    assert ("momentum" in init_args) == (init_args["optimizer"] == "sgd")
    assert config["trainer"] == {"max_epochs": 2}
    assert set(exported["versions"]) >= {"optuna", "ray", "torch", "pytorch-lightning", "jsonargparse"}
    state = torch.load(exported["checkpoint"], weights_only=True)
    assert any(key.startswith("backbone") for key in state)

    metrics = retrain(result.run_dir / "best.yaml", tmp_path / "retrain")
    # Same config, same seed; thread counts may differ from the trial's, so allow a sample.
    assert metrics["val_acc"] == pytest.approx(exported["value"], abs=2 / 360)
    assert 0.0 <= metrics["test_acc"] <= 1.0 and math.isfinite(metrics["test_loss"])
    assert (tmp_path / "retrain" / "model.pt").exists()


def test_export_command_writes_top_k(finished_sweep, capsys):
    spec, result = finished_sweep
    (result.run_dir / "best.yaml").unlink()
    assert cli_main(["export", str(result.run_dir), "--top-k", "2"]) == 0
    assert (result.run_dir / "best.yaml").exists()
    ranks = sorted((result.run_dir / "top").glob("rank_*.yaml"))
    complete = state_counts(load_study(spec.name, result.storage)).get("COMPLETE", 0)
    assert len(ranks) == min(2, complete)
    values = [read_record(p)["value"] for p in ranks]
    assert values == sorted(values, reverse=True)


FAILING_SPEC = """
name: failing
task: image_classification
metric: val_acc
space:
  # 1e12 with momentum and no normalization diverges to NaN in the first epoch.
  learning_rate: {type: categorical, choices: [1.0e-3, 1.0e+12]}
  optimizer: sgd
  momentum: 0.99
  normalization: none
  lr_schedule: constant
  conv_layers: 1
  channels: 8
strategy: {name: random, seed: 0}
scheduler: none
budget: {trials: 4, max_epochs: 1}
resources: {cpus: 1, concurrency: 2}
"""


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, local_ray):
    spec_path = tmp_path / "failing.yaml"
    spec_path.write_text(FAILING_SPEC)
    spec = parse_spec(spec_path)
    result = run_sweep(spec, tmp_path / "run")
    study = load_study(spec.name, result.storage)
    diverging = [t for t in study.trials if t.params["learning_rate"] > 1]
    healthy = [t for t in study.trials if t.params["learning_rate"] < 1]
    assert diverging and healthy, "seed 0 draws both learning rates among 4 trials"
    for trial in diverging:
        assert trial.state == optuna.trial.TrialState.FAIL
        assert "NonFiniteMetricError" in trial.user_attrs["fail_reason"]
        assert (result.run_dir / "trials" / f"trial_{trial.number:04d}" / "error.txt").exists()
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in healthy)
    assert result.best_trial in {t.number for t in healthy}


def test_the_sweep_records_what_data_it_trained_on(finished_sweep):
    spec, result = finished_sweep
    assert (result.run_dir / "data.txt").read_text() == (
        "scikit-learn digits (real 8x8 images), digits 0-9; train 1077, val 360, test 360\n")
