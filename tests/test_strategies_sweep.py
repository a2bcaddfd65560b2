"""Every registered strategy runs a real sweep through `launch.py sweep` on the digits task,
and `local` with `start_from: best.yaml` begins exactly at that point."""

from __future__ import annotations

import optuna
import pytest
from finesweep.search.cli import main as launch
from finesweep.search.run_dir.files import read_record
from finesweep.search.strategies import STRATEGIES
from finesweep.search.study import load_study, state_counts

pytestmark = pytest.mark.slow

SPEC = """
name: strategy_{name}
task: image_classification
metric: val_acc
space:
  learning_rate: {{type: float, low: 1.0e-3, high: 3.0e-2, log: true, {lr_step}}}
  optimizer: {{type: categorical, choices: [adam, sgd]}}
  momentum: {{type: float, low: 0.8, high: 0.9, step: 0.1, when: {{optimizer: sgd}}}}
  channels: {{type: int, low: 8, high: 12, step: 4}}
  conv_layers: 1
  hidden_units: 16
strategy: {{name: {name}, seed: 1, options: {options}}}
scheduler: none
budget: {{trials: 3, max_epochs: 1}}
resources: {{cpus: 1, concurrency: 2}}
"""
OPTIONS = {"local": "{n_startup_trials: 1}", "auto": "{switch_after: 1}"}


def _spec(tmp_path, name: str, options: str | None = None) -> str:
    # grid needs a finite space: its learning rate takes a step instead of a log scale.
    text = SPEC.format(name=name, options=options or OPTIONS.get(name, "{}"),
                       lr_step="" if name != "grid" else "step: 1.0e-2").replace(
        "log: true, step: 1.0e-2", "step: 1.0e-2")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace("log: true, }", "log: true}"))
    return str(path)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_runs_a_real_sweep(name, tmp_path, local_ray):
    run_dir = tmp_path / "run"
    assert launch(["sweep", _spec(tmp_path, name), "--out", str(run_dir)]) == 0
    study = load_study(f"strategy_{name}", f"sqlite:///{run_dir / 'study.db'}")
    assert state_counts(study) == {"COMPLETE": 3}
    for trial in study.trials:
        assert ("momentum" in trial.params) == (trial.params["optimizer"] == "sgd")
        assert 1e-3 <= trial.params["learning_rate"] <= 3e-2
    assert (run_dir / "best.yaml").exists()


def test_local_starts_from_an_exported_best_yaml(tmp_path, local_ray):
    first = tmp_path / "first"
    assert launch(["sweep", _spec(tmp_path, "random"), "--out", str(first)]) == 0
    best = read_record(first / "best.yaml")  # the trial's params, from the export's #% record
    spec = _spec(tmp_path, "local", options=f"{{start_from: {first / 'best.yaml'}}}")
    second = tmp_path / "second"
    assert launch(["sweep", spec, "--out", str(second)]) == 0
    study = load_study("strategy_local", f"sqlite:///{second / 'study.db'}")
    trial_zero = min(study.trials, key=lambda t: t.number)
    assert trial_zero.params == pytest.approx(best["params"])
    assert trial_zero.state == optuna.trial.TrialState.COMPLETE
