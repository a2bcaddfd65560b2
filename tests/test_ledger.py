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

# The ledger never trains: the spec only names a model and data of the right kinds, whose
# results the tests script as Ray Tune would report them.
TASK = """\
import pytorch_lightning as pl


class LedgerCurve(pl.LightningModule):
    def __init__(self, learning_rate: float = 0.1, hidden_units: int = 8) -> None:
        super().__init__()
        self.learning_rate, self.hidden_units = learning_rate, hidden_units


class LedgerData(pl.LightningDataModule):
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


def test_a_trial_records_its_world_size_and_ranks(spec, tmp_path):
    """A multi-worker trial's reports carry every rank's place; a one-worker trial is one rank."""
    ledger = _ledger(spec, tmp_path)
    ledger.hand_out("one")
    ledger.hand_out("two")
    ranks = [{"rank": 0, "node": "node-a", "node_ip": "10.0.0.1", "gpu_ids": ["0"]},
             {"rank": 1, "node": "node-b", "node_ip": "10.0.0.2", "gpu_ids": ["0"]}]
    ledger.record("one", _epoch(1, 0.5))
    ledger.record("two", _epoch(1, 0.6, world_size=2, ranks=ranks))
    one, two = ledger.study.trials
    assert one.user_attrs["world_size"] == 1
    assert one.user_attrs["ranks"] == [{"rank": 0, "node": "node-a", "node_ip": "127.0.0.1", "gpu_ids": []}]
    assert (two.user_attrs["world_size"], two.user_attrs["ranks"]) == (2, ranks)


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
    ledger.complete("r2", None)  # the one still running ends as the runner stops it: left to a resume
    assert _states(ledger) == {0: "FAIL", 1: "RUNNING"}


def _fail(ledger: TrialLedger, runner: str, tmp_path: Path, reason: str) -> None:
    number = ledger._live[runner].number
    error_path(tmp_path, number).parent.mkdir(parents=True, exist_ok=True)
    error_path(tmp_path, number).write_text(f"Traceback (most recent call last):\n  ...\n{reason}\n")
    ledger.complete(runner, None, error=True)


def test_trials_failing_the_same_way_in_a_row_stop_the_sweep_and_leave_the_rest_resumable(spec, tmp_path):
    ledger = _ledger(spec, tmp_path)
    for runner in ("a", "b", "c", "d"):
        ledger.hand_out(runner)
    # The same error, its numbers and paths differing from trial to trial.
    _fail(ledger, "a", tmp_path, f"FileNotFoundError: [Errno 2] No such file: '{tmp_path}/trials/trial_0000/x.pt'")
    _fail(ledger, "b", tmp_path, "FileNotFoundError: [Errno 2] No such file: '/elsewhere/trial_0001/x.pt'")
    assert ledger.abort_reason is None
    _fail(ledger, "c", tmp_path, "FileNotFoundError: [Errno 2] No such file: '/srv/runs/trial_0002/x.pt'")
    assert ledger.abort_reason.startswith("3 trials in a row failed with the same error "
                                          "(budget.stop_after_failures: 3): FileNotFoundError")
    assert ledger.hand_out("e") == FINISHED
    _run(ledger, "d", [0.5])
    ledger.complete("d", None)  # stopped by the runner as the sweep ends: run again on resume
    assert _states(ledger) == {0: "FAIL", 1: "FAIL", 2: "FAIL", 3: "RUNNING"}


def test_different_errors_a_success_between_or_bad_values_do_not_stop_the_sweep(spec, tmp_path):
    ledger = _ledger(spec, tmp_path)
    for runner in "abcdefghi":
        ledger.hand_out(runner)
    _fail(ledger, "a", tmp_path, "ValueError: width 12 must be even")
    _fail(ledger, "b", tmp_path, "ValueError: width 14 must be even")
    _fail(ledger, "c", tmp_path, "RuntimeError: shapes (3, 4) and (5, 6) do not match")  # another error
    _fail(ledger, "d", tmp_path, "ValueError: width 16 must be even")
    _fail(ledger, "e", tmp_path, "ValueError: width 18 must be even")
    _run(ledger, "f", [0.5, 0.6, 0.7])
    ledger.complete("f", None)  # a success breaks the run of failures
    _fail(ledger, "g", tmp_path, "ValueError: width 20 must be even")
    # A loss that went NaN says the values were bad, not the sweep: any number of them in a row.
    _fail(ledger, "h", tmp_path, "finesweep.models.run.NonFiniteMetricError: epoch 1: non-finite val_loss")
    ledger.record("i", _epoch(1, float("nan")))
    ledger.complete("i", None)
    for runner in "jkl":
        ledger.hand_out(runner)
        _fail(ledger, runner, tmp_path, "finesweep.models.run.NonFiniteMetricError: epoch 2: non-finite train_loss")
    assert ledger.abort_reason is None
    assert ledger.hand_out("m")["number"] == 12


def test_the_failure_limit_is_the_specs_and_zero_never_stops(spec, tmp_path):
    from dataclasses import replace

    never = replace(spec, budget=replace(spec.budget, stop_after_failures=0))
    ledger = TrialLedger(open_study(never, "sqlite:///:memory:", optuna.samplers.RandomSampler(seed=0)), never,
                         seed_base=100, run_dir=tmp_path)
    for runner in "abcde":
        ledger.hand_out(runner)
        _fail(ledger, runner, tmp_path, "KeyError: 'encoder'")
    assert ledger.abort_reason is None
    once = replace(spec, budget=replace(spec.budget, stop_after_failures=1))
    ledger = TrialLedger(open_study(once, "sqlite:///:memory:", optuna.samplers.RandomSampler(seed=0)), once,
                         seed_base=100, run_dir=tmp_path)
    ledger.hand_out("a")
    _fail(ledger, "a", tmp_path, "KeyError: 'encoder'")
    assert "(budget.stop_after_failures: 1): KeyError: 'encoder'" in ledger.abort_reason


def test_failure_keys_mask_numbers_and_paths_but_keep_the_words():
    from finesweep.search.ledger import failure_key

    assert failure_key("OSError: [Errno 2] No such file: '/a/b/trial_0003/c.txt' (0x7f3a)") == \
        failure_key("OSError: [Errno 2] No such file: '/x/trial_0012/c.txt' (0x1b2c)")
    assert failure_key("ValueError: lr 0.5 too high") == failure_key("ValueError: lr 3e-2 too high")
    assert failure_key("ValueError: lr 0.5 too high") != failure_key("TypeError: lr 0.5 too high")
    assert failure_key("ValueError: lr too high") != failure_key("ValueError: width too high")


def test_a_trial_its_own_callbacks_stopped_is_complete_with_its_best_epoch(spec, tmp_path):
    ledger = _ledger(spec, tmp_path)
    ledger.hand_out("r1")
    ledger.record("r1", _epoch(1, 0.6))
    ledger.complete("r1", {**_epoch(2, 0.5, best=0.6), "best_epoch": 1, "stopped_early": True})
    trial = ledger.study.trials[0]
    assert trial.state.name == "COMPLETE" and trial.value == pytest.approx(0.6)
    assert trial.user_attrs["best_epoch"] == 1 and trial.user_attrs["stopped_early"] is True
    assert trial.user_attrs["epochs"] == 2


def test_the_training_state_goes_when_the_trial_ends_and_stays_when_it_is_interrupted(spec, tmp_path):
    from finesweep.search.run_dir import STATE_FILE, trial_dir

    stop = threading.Event()
    ledger = _ledger(spec, tmp_path, stop=stop)
    for runner in ("a", "b"):
        number = ledger.hand_out(runner)["number"]
        trial_dir(tmp_path, number).mkdir(parents=True)
        (trial_dir(tmp_path, number) / STATE_FILE).write_bytes(b"state")
    _run(ledger, "a", [0.5])
    ledger.complete("a", None)  # pruned: ended for good
    assert not (trial_dir(tmp_path, 0) / STATE_FILE).exists()
    _run(ledger, "b", [0.5])
    stop.set()
    ledger.complete("b", None)  # interrupted: a resume goes on from it
    assert (trial_dir(tmp_path, 1) / STATE_FILE).exists()


def test_progress_lines_count_running_trials_and_go_on_counting_after_a_resume(spec, tmp_path):
    import io

    from finesweep.search.views.progress import SweepMonitor

    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = _ledger(spec, tmp_path, url)
    for runner in ("a", "b", "c"):
        first.hand_out(runner)
    _run(first, "a", [0.5, 0.6, 0.7])
    first.complete("a", None)
    _run(first, "b", [0.2])
    first.complete("b", None)  # pruned
    _fail(first, "c", tmp_path, "ValueError: bad")
    left = first.hand_out("d")  # the driver dies here
    first.record("d", _epoch(1, 0.3))

    study = optuna.load_study(study_name="ledger", storage=url)
    out = io.StringIO()
    monitor = SweepMonitor(spec, 6, out=out, study=study)
    second = TrialLedger(study, spec, seed_base=100, run_dir=tmp_path, monitor=monitor,
                         rerun=interrupted_trials(study), going_on=[left["number"]])
    second.hand_out("e")
    second.hand_out("f")
    lines = out.getvalue().splitlines()
    assert "trial   3 started (interrupted, goes on after its last finished epoch): learning_rate" in lines[0]
    assert lines[0].endswith("| running 1") and lines[1].endswith("| running 2")
    assert "trial   4 started: learning_rate" in lines[1]
    _run(second, "e", [0.4, 0.5, 0.6])
    second.complete("e", None)
    # Counted on from the first driver's trials: 1 pruned and 1 failed before, 4 of 6 done now.
    assert "done 4/6, running 1, pruned 1, failed 1 | best val_acc 0.7000 (trial 0)" in out.getvalue()


def test_the_ledger_needs_neither_ray_nor_torch_and_its_spec_no_ray(tmp_path):
    """What the file's speed rests on, checked in a fresh interpreter: the ledger and the spec
    parser import neither Ray nor torch; parsing a spec imports the user's (Lightning) classes,
    still without Ray."""
    import subprocess
    import sys

    (tmp_path / "ledger_task.py").write_text(TASK)
    (tmp_path / "spec.yaml").write_text(SPEC)
    heavy = "sorted(m for m in ('ray', 'torch', 'pytorch_lightning') if m in sys.modules)"
    code = ("import sys; from finesweep.search.spec import parse_spec; "
            "from finesweep.search.ledger import TrialLedger; "
            f"print({heavy}); parse_spec({str(tmp_path / 'spec.yaml')!r}); print({heavy})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["[]", "['pytorch_lightning', 'torch']"]


def test_progress_lines_show_the_auto_strategys_phase(tmp_path):
    import io

    from finesweep.search.strategies.seeding import build_sampler
    from finesweep.search.views.progress import SweepMonitor

    (tmp_path / "ledger_task.py").write_text(TASK)
    path = tmp_path / "auto.yaml"
    path.write_text(SPEC.replace("strategy: {name: random, seed: 0}",
                                 "strategy: {name: auto, seed: 0, options: {switch_after: 2}}"))
    auto = parse_spec(path)
    out = io.StringIO()
    ledger = TrialLedger(open_study(auto, "sqlite:///:memory:", build_sampler(auto)), auto, seed_base=1,
                         run_dir=tmp_path, monitor=SweepMonitor(auto, 4, out=out))
    for runner in ("a", "b", "c"):
        ledger.hand_out(runner)
        _run(ledger, runner, [0.5, 0.6, 0.7])
        ledger.complete(runner, None)
    starts = [line for line in out.getvalue().splitlines() if "started" in line]
    assert ["(auto: global)" in line for line in starts] == [True, True, False]
    assert "(auto: local)" in starts[2]
