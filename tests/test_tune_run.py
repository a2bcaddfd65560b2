"""The Ray-free parts of a Tune run: when it stops, what the scheduler gets, what is tidied up.
No Ray: the backend only wraps these. Whose account of a dead trial is read is checked against
Ray's own files (test_reliability: a worker that dies; test_cluster: a node that dies)."""

from __future__ import annotations

import pickle
import threading
from types import SimpleNamespace

from finesweep.search.run_dir import ray_trial_name
from finesweep.search.schedulers import hyperband_brackets, scheduler_arguments
from finesweep.search.tune_run import RunControl, remove_empty_trial_dirs


def test_the_run_stops_on_the_drivers_flag_or_a_sweep_ending_failure():
    stop, ledger = threading.Event(), SimpleNamespace(abort_reason=None)
    control = RunControl(stop, ledger)
    assert not control.should_stop()
    ledger.abort_reason = "MetricNotLoggedError: val_acc"
    assert control.should_stop()
    ledger.abort_reason = None
    stop.set()
    assert control.should_stop()


def test_a_pickled_copy_keeps_only_the_flag_and_only_in_this_process():
    stop = threading.Event()
    control = RunControl(stop, SimpleNamespace(abort_reason="failed"), SimpleNamespace(), lambda: None)
    copy = pickle.loads(pickle.dumps(control))
    assert copy.ledger is None and copy.monitor is None and copy.tick is None
    assert not copy.should_stop()  # the abort is the driver's object's to see
    stop.set()
    assert copy.should_stop()
    copy.key = "another-process-1"
    assert not copy.should_stop()


def test_each_step_lets_the_monitor_speak_and_ticks_every_tick_s(monkeypatch):
    beats, ticks, clock = [], [], [100.0]
    monkeypatch.setattr("finesweep.search.tune_run.time.monotonic", lambda: clock[0])
    control = RunControl(threading.Event(), monitor=SimpleNamespace(heartbeat=lambda: beats.append(1)),
                         tick=lambda: ticks.append(clock[0]))
    for now in (101.0, 120.0, 131.0, 140.0, 162.0):
        clock[0] = now
        control.step()
    assert len(beats) == 5 and ticks == [131.0, 162.0]


def test_scheduler_arguments_count_epochs_and_fill_defaults():
    assert scheduler_arguments("asha", {"grace_period": 5}, max_epochs=3) == {
        "time_attr": "epoch", "max_t": 3, "grace_period": 3, "reduction_factor": 3, "brackets": 1}
    assert scheduler_arguments("median", {}, max_epochs=3) == {
        "time_attr": "epoch", "grace_period": 1, "min_samples_required": 3}
    assert scheduler_arguments("none", {}, max_epochs=3) == {}


def test_hyperband_is_asynchronous_over_all_of_its_brackets():
    # First rungs at 1, 3 and 9 epochs of 20: three brackets; none when the grace period is all.
    assert scheduler_arguments("hyperband", {}, max_epochs=20) == {
        "time_attr": "epoch", "max_t": 20, "grace_period": 1, "reduction_factor": 3, "brackets": 3}
    assert scheduler_arguments("hyperband", {"reduction_factor": 2}, max_epochs=16)["brackets"] == 4
    assert scheduler_arguments("hyperband", {"grace_period": 30}, max_epochs=20)["brackets"] == 1
    assert hyperband_brackets(81, 1, 3) == 4


def test_only_empty_trial_folders_of_tune_are_removed(tmp_path):
    empty, kept, other = (tmp_path / ray_trial_name("a")), (tmp_path / ray_trial_name("b")), tmp_path / "keep_me"
    for folder in (empty, kept, other):
        folder.mkdir()
    (kept / "error.txt").write_text("boom\n")
    assert remove_empty_trial_dirs(tmp_path) == [empty]
    assert kept.exists() and other.exists() and not empty.exists()
