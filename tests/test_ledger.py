"""The trial ledger without Ray: trials handed out of a real (in-memory) Optuna study and ended
with scripted results, as Ray Tune would report them. Every outcome the reliability tests see
end to end: complete, pruned by the scheduler, NaN, raised, worker died, resumed after a killed
driver, half drawn, moved to another node, interrupted, and a metric never logged."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import pytest
from finesweep.search.ledger import FINISHED, TrialLedger
from finesweep.search.resume import interrupted_trials
from finesweep.search.run_dir import error_path
from finesweep.search.spec import parse_spec
from finesweep.search.study import open_study

# A simulated task (no torch, no Lightning): the ledger never trains, and the spec behind it
# then parses without importing either, so the whole file runs in a couple of seconds.
TASK = """\
from finesweep.models.simulation import SimulatedData, SimulatedModel


class LedgerCurve(SimulatedModel):
    def __init__(self, learning_rate: float = 0.1, hidden_units: int = 8) -> None:
        self.learning_rate, self.hidden_units = learning_rate, hidden_units

    def simulate(self, data, *, seed, max_epochs):
        for epoch in range(1, max_epochs + 1):
            yield {"val_acc": min(1.0, self.learning_rate * epoch)}


class LedgerData(SimulatedData):
    pass
"""

SPEC = """\
name: ledger
model: {class_path: ledger_task.LedgerCurve}
data: {class_path: ledger_task.LedgerData}
metric: val_acc
space:
  learning_rate: {type: float, low: 0.01, high: 0.5, log: true}
  hidden_units: {type: int, low: 4, high: 32}
strategy: {name: random, seed: 0}
budget: {trials: 4, max_epochs: 3}
"""

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def spec(tmp_path):
    (tmp_path / "ledger_task.py").write_text(TASK)
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return parse_spec(path)


def _ledger(spec, tmp_path: Path, url: str = "sqlite:///:memory:", **kwargs) -> TrialLedger:
    study = open_study(spec, url, optuna.samplers.RandomSampler(seed=0))
    return TrialLedger(study, spec, seed_base=100, run_dir=tmp_path, **kwargs)


def _epoch(epoch: int, value: float, best: float | None = None, node: str = "node-a", **extra) -> dict:
    return {"epoch": epoch, "val_acc": value, "best_value": value if best is None else best, "best_epoch": epoch,
            "node_id": node, "node_ip": "127.0.0.1", "gpu_ids": [], "accelerator": "cpu", **extra}


def _run(ledger: TrialLedger, runner: str, values: list[float], **extra) -> None:
    best = None
    for epoch, value in enumerate(values, start=1):
        best = value if best is None else max(best, value)
        ledger.record(runner, _epoch(epoch, value, best, **extra))


def _states(ledger: TrialLedger) -> dict[int, str]:
    return {t.number: t.state.name for t in ledger.study.get_trials(deepcopy=False)}


def test_a_trial_is_handed_out_with_its_seed_and_config_and_completes(spec, tmp_path):
    ledger = _ledger(spec, tmp_path)
    request = ledger.hand_out("r1")
    assert request["number"] == 0 and request["seed"] == 100
    assert request["config"]["model"]["class_path"].endswith("LedgerCurve")
    _run(ledger, "r1", [0.6, 0.8, 0.7])
    ledger.complete("r1", None)
    trial = ledger.study.trials[0]
    assert trial.state.name == "COMPLETE" and trial.value == pytest.approx(0.8)
    assert trial.intermediate_values == {1: 0.6, 2: 0.8, 3: 0.7}
    assert trial.user_attrs["epochs"] == 3 and trial.user_attrs["node"] == "node-a"


def test_the_final_epoch_given_only_at_the_end_is_recorded(spec, tmp_path):
    ledger = _ledger(spec, tmp_path)
    ledger.hand_out("r1")
    _run(ledger, "r1", [0.5, 0.6])
    ledger.complete("r1", _epoch(3, 0.9))  # Ray hands the last result only to on_trial_complete
    assert ledger.study.trials[0].value == pytest.approx(0.9)
    assert ledger.study.trials[0].state.name == "COMPLETE"


def test_a_trial_the_scheduler_stopped_is_pruned_with_its_best_epoch(spec, tmp_path):
    ledger = _ledger(spec, tmp_path)
    ledger.hand_out("r1")
    _run(ledger, "r1", [0.4])
    ledger.complete("r1", None)
    trial = ledger.study.trials[0]
    assert trial.state.name == "PRUNED" and trial.intermediate_values == {1: 0.4}


def test_nan_and_raising_trials_fail_with_their_reason_and_the_ledger_goes_on(spec, tmp_path):
    ledger = _ledger(spec, tmp_path)
    ledger.hand_out("nan")
    ledger.hand_out("raise")
    ledger.record("nan", _epoch(1, float("nan")))
    ledger.complete("nan", None)
    error_path(tmp_path, 1).parent.mkdir(parents=True)
    error_path(tmp_path, 1).write_text("Traceback ...\nInjectedFailure: injected failure in epoch 1\n")
    ledger.complete("raise", None, error=True)
    trials = ledger.study.trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert trials[0].user_attrs["fail_reason"] == "non-finite metric nan"
    assert trials[1].user_attrs["fail_reason"] == "InjectedFailure: injected failure in epoch 1"
    assert ledger.hand_out("next")["number"] == 2  # a failing trial never stops the sweep


def test_a_trial_whose_worker_died_records_the_runners_account(spec, tmp_path):
    ledger = _ledger(spec, tmp_path)
    ledger.hand_out("r1")
    ledger.complete("r1", None, error=True, runner_error=lambda: "The actor died unexpectedly")
    assert ledger.study.trials[0].user_attrs["fail_reason"] == "The actor died unexpectedly"


def test_a_retried_trial_on_another_node_records_where_it_last_ran(spec, tmp_path):
    ledger = _ledger(spec, tmp_path)
    ledger.hand_out("r1")
    ledger.record("r1", _epoch(1, 0.5, node="node-a"))
    ledger.record("r1", _epoch(2, 0.6, node="node-b", resumed_from_epoch=1))
    ledger.complete("r1", _epoch(3, 0.7, node="node-b", resumed_from_epoch=1))
    trial = ledger.study.trials[0]
    assert trial.user_attrs["node"] == "node-b" and trial.user_attrs["resumed_from_epoch"] == 1
    assert trial.state.name == "COMPLETE"


def test_trials_a_killed_driver_left_running_are_run_again_as_they_were(spec, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = _ledger(spec, tmp_path, url)
    done = first.hand_out("a")
    _run(first, "a", [0.5, 0.6, 0.7])
    first.complete("a", None)
    left = first.hand_out("b")  # the driver dies here: trial 1 stays RUNNING
    first.record("b", _epoch(1, 0.3))

    study = optuna.load_study(study_name="ledger", storage=url)
    rerun = interrupted_trials(study)
    second = TrialLedger(study, spec, seed_base=100, run_dir=tmp_path, rerun=rerun)
    again = second.hand_out("c")
    assert (again["number"], again["seed"], again["config"]) == (left["number"], left["seed"], left["config"])
    _run(second, "c", [0.4, 0.5, 0.6])
    second.complete("c", None)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert len(trials) == 2 and trials[1].state.name == "COMPLETE"
    assert trials[1].user_attrs["attempts"] == 2
    assert second.hand_out("d")["number"] == 2 != done["number"]  # nothing repeated, nothing lost


def test_a_trial_left_half_drawn_is_finished_drawing_and_handed_out(spec, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(spec, url, optuna.samplers.RandomSampler(seed=0))
    asked = study.ask()  # the driver died after asking, before recording seed and config
    asked.suggest_float("learning_rate", 0.01, 0.5, log=True)
    second = TrialLedger(study, spec, seed_base=100, run_dir=tmp_path, rerun=interrupted_trials(study))
    request = second.hand_out("r")
    assert request["number"] == asked.number and request["seed"] == 100 + asked.number
    lr = study.get_trials(deepcopy=False)[0].params["learning_rate"]
    assert request["config"]["model"]["init_args"]["learning_rate"] == lr


def test_an_interrupt_leaves_running_trials_resumable_and_hands_out_nothing(spec, tmp_path):
    stop = threading.Event()
    ledger = _ledger(spec, tmp_path, stop=stop)
    ledger.hand_out("r1")
    _run(ledger, "r1", [0.5])
    stop.set()
    ledger.complete("r1", None, error=True)  # stopped, or its worker taken down by the Ctrl-C
    assert _states(ledger) == {0: "RUNNING"}
    assert ledger.hand_out("r2") is None


def test_a_metric_never_logged_ends_the_sweep_after_the_first_trial(spec, tmp_path):
    ledger = _ledger(spec, tmp_path)
    ledger.hand_out("r1")
    ledger.hand_out("r2")
    error_path(tmp_path, 0).parent.mkdir(parents=True)
    error_path(tmp_path, 0).write_text("finesweep.models.run.MetricNotLoggedError: metric 'val_acc' was "
                                       "never logged; the module logged: val_loss\n")
    ledger.complete("r1", None, error=True)
    assert ledger.abort_reason.startswith("finesweep.models.run.MetricNotLoggedError")
    assert ledger.hand_out("r3") == FINISHED
    ledger.complete("r2", None)  # the one still running ends as the runner stops it
    assert _states(ledger) == {0: "FAIL", 1: "FAIL"}


def test_the_ledger_and_its_spec_need_neither_ray_nor_torch(tmp_path):
    """What the file's speed rests on, checked in a fresh interpreter."""
    import subprocess
    import sys

    (tmp_path / "ledger_task.py").write_text(TASK)
    (tmp_path / "spec.yaml").write_text(SPEC)
    code = ("import sys; from finesweep.search.spec import parse_spec; "
            "from finesweep.search.ledger import TrialLedger; "
            f"parse_spec({str(tmp_path / 'spec.yaml')!r}); "
            "print(sorted(m for m in ('ray', 'torch', 'pytorch_lightning') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
