"""The replay benchmark (benchmarks/replay_model.py, benchmarks/curves.py, benchmarks/replay.py):
the curve table format, the nearest-configuration lookup, the replay model trained through
finesweep's ordinary Lightning path, the benchmark timing callback, the replay benchmark's time
and regret bookkeeping, and a whole replay sweep through `launch.py sweep`."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from finesweep.models.run import MetricNotLoggedError, NonFiniteMetricError, TrainingRun
from finesweep.models.training import fit

from benchmarks import curves
from benchmarks.curves import CurveTable, RecordedRun
from benchmarks.replay_model import RecordedFailure, ReplayData, ReplayModel

ROOT = Path(__file__).resolve().parents[1]
GRID = {"learning_rate": [1e-3, 1e-2], "optimizer": ["adam", "sgd"], "weight_decay": [1e-3],
        "conv_layers": [2], "channels": [16], "dropout": [0.0, 0.5]}
# val_acc per epoch by (learning rate, optimizer): adam at 1e-2 is best at every epoch, with both seeds.
CURVES = {(1e-3, "adam"): [0.5, 0.7, 0.8, 0.85], (1e-2, "adam"): [0.8, 0.9, 0.95, 0.96],
          (1e-3, "sgd"): [0.1, 0.2, 0.3, 0.35], (1e-2, "sgd"): [0.3, 0.5, 0.6, 0.65]}
REPLAY = "benchmarks.replay_model"


def params(learning_rate: float, optimizer: str) -> dict:
    return {"learning_rate": learning_rate, "optimizer": optimizer, "weight_decay": 1e-3, "conv_layers": 2,
            "channels": 16, "dropout": 0.0}


def write_table(path: Path, failed: bool = False) -> Path:
    curves.start_table(path, {"grid": GRID, "epochs": 4, "seeds": [0, 1], "recorded_with": "a test"})
    for (lr, optimizer), values in CURVES.items():
        for seed in (0, 1):
            shifted = [round(v - 0.01 * seed, 4) for v in values]
            # Epochs at learning rate 1e-2 take 0.2 s, the others 0.1 s; seed 1's last epoch was
            # slowed down by something else on the machine.
            seconds = [0.1 * (1 + (lr == 1e-2))] * 3 + [0.1 * (1 + (lr == 1e-2)) if seed == 0 else 5.0]
            curves.append_run(path, RecordedRun(params(lr, optimizer), seed, {"val_acc": shifted,
                                                "val_loss": [1 - v for v in shifted]}, seconds))
    if failed:
        curves.append_run(path, RecordedRun({**params(1e-3, "adam"), "dropout": 0.5}, 0,
                                            {"val_acc": [0.4], "val_loss": [0.9]}, [0.1], "NonFiniteMetricError: nan"))
    return path


@pytest.fixture
def table_path(tmp_path):
    return write_table(tmp_path / "curves.jsonl.gz")


def replay_run(table: Path, max_epochs: int = 4, seed: int = 0, metric: str = "val_acc", **model) -> TrainingRun:
    model = {"dropout": 0.0, **model}
    return TrainingRun(model={"class_path": f"{REPLAY}.ReplayModel", "init_args": model},
                       data={"class_path": f"{REPLAY}.ReplayData", "init_args": {"path": str(table), "time_scale": 0}},
                       trainer={}, max_epochs=max_epochs, seed=seed, metric=metric, mode="max")


# ---- the table format


def test_a_table_reads_back_what_was_appended_one_member_per_run(table_path):
    header, runs = curves.read_curves(table_path)
    assert header["format"] == curves.FORMAT and header["grid"] == GRID
    assert len(runs) == 8 and runs[1].seed == 1 and runs[1].metrics["val_acc"] == [0.49, 0.69, 0.79, 0.84]
    before = table_path.stat().st_size
    curves.compact(table_path)
    assert curves.read_curves(table_path) == (header, runs)
    assert table_path.stat().st_size < before


def test_a_run_cut_short_by_a_killed_recorder_is_ignored(table_path):
    data = table_path.read_bytes()
    extra = gzip.compress(json.dumps({"params": params(1e-3, "adam"), "seed": 5}).encode() + b"\n")
    table_path.write_bytes(data + extra[:len(extra) // 2])
    _, runs = curves.read_curves(table_path)
    assert len(runs) == 8


def test_a_file_that_is_not_a_table_says_so(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"something": 1}\n'))
    with pytest.raises(ValueError, match="not a curve table"):
        curves.read_curves(path)


# ---- the lookup


def test_a_recorded_point_is_found_exactly_and_others_take_the_nearest(table_path):
    table = CurveTable.read(table_path)
    assert table.lookup(params(1e-2, "sgd")).params == params(1e-2, "sgd")
    # Grid steps on a log scale: 2e-3 is 0.30 steps from 1e-3, 4e-3 is 0.60 (so nearer 1e-2).
    assert table.lookup(params(2e-3, "sgd")).params["learning_rate"] == 1e-3
    assert table.lookup(params(4e-3, "sgd")).params["learning_rate"] == 1e-2
    assert table.position("learning_rate", math.sqrt(1e-3 * 1e-2)) == pytest.approx(0.5)
    # Outside the grid, and a value of an unrecorded parameter: the nearest still, categories kept.
    far = table.lookup({**params(1.0, "adam"), "channels": 64})
    assert far.params == params(1e-2, "adam")
    with pytest.raises(KeyError, match="optimizer"):
        table.lookup({"learning_rate": 1e-3})


def test_trials_with_consecutive_seeds_replay_the_recorded_seeds_in_turn(table_path):
    config = CurveTable.read(table_path).lookup(params(1e-3, "adam"))
    assert [config.run_for(seed).seed for seed in (10, 11, 12)] == [0, 1, 0]


def test_the_true_value_of_a_configuration_averages_its_seeds_best_epochs(table_path):
    table = CurveTable.read(table_path)
    assert table.lookup(params(1e-2, "adam")).best_value("val_acc", "max") == pytest.approx(0.955)
    assert table.lookup(params(1e-2, "adam")).best_value("val_acc", "max", epochs=2) == pytest.approx(0.895)
    best, value = table.best("val_loss", "min")
    assert best.params == params(1e-2, "adam") and value == pytest.approx(0.045)


# ---- the replay model, trained as any LightningModule


def test_a_replay_run_reports_the_recorded_curve_of_its_seed(table_path):
    run = replay_run(table_path, seed=1, learning_rate=0.01, optimizer="adam")
    seen = []
    result = fit(run, on_epoch_end=lambda epoch, metrics: seen.append((epoch, metrics["val_acc"])))
    assert seen == [(1, 0.79), (2, 0.89), (3, 0.94), (4, 0.95)]
    assert result.history[-1] == {"epoch": 4, "val_acc": 0.95, "val_loss": pytest.approx(0.05)}
    assert result.best_epoch == 4


def test_a_recorded_failure_fails_the_replay_where_it_happened(tmp_path):
    table = write_table(tmp_path / "t.jsonl.gz", failed=True)
    seen = []
    with pytest.raises(RecordedFailure, match="after epoch 1: NonFiniteMetricError"):
        fit(replay_run(table, learning_rate=1e-3, dropout=0.5), on_epoch_end=lambda e, m: seen.append(e))
    assert seen == [1]


def test_replay_checks_its_metric_and_budget_as_training_does(table_path):
    with pytest.raises(MetricNotLoggedError, match="'val_f1' was never logged; the module logged: val_acc, val_loss"):
        fit(replay_run(table_path, metric="val_f1"))
    with pytest.raises(ValueError, match="holds 4 epochs per run; budget.max_epochs is 5"):
        fit(replay_run(table_path, max_epochs=5))
    with pytest.raises(FileNotFoundError, match="record_curves"):
        ReplayData(path=str(table_path.parent / "missing.jsonl.gz"))


def test_a_non_finite_replayed_metric_fails_like_a_trained_one(table_path, monkeypatch):
    monkeypatch.setattr(ReplayModel, "epoch_metrics", lambda self, epoch: {"val_acc": math.nan})
    with pytest.raises(NonFiniteMetricError, match="epoch 1: non-finite val_acc"):
        fit(replay_run(table_path))


def test_a_replay_trial_runs_as_any_trial_and_the_timing_callback_times_it(table_path, tmp_path):
    """The trial function in a fresh process (as in a trial worker), with the benchmarks' timing
    callback in the Trainer's callbacks as a spec gives it; the reports carry the metrics only."""
    timings = tmp_path / "timings"
    script = textwrap.dedent(f"""
        import json, os
        from finesweep.search.trial import SweepContext, TrialRequest, run_trial
        context = SweepContext(metric="val_acc", mode="max", max_epochs=4, run_dir={str(tmp_path / 'run')!r},
                               cpus_per_trial=1)
        model = {{"optimizer": "sgd", "dropout": 0.0}}
        config = {{"model": {{"class_path": "{REPLAY}.ReplayModel", "init_args": model}},
                  "data": {{"class_path": "{REPLAY}.ReplayData", "init_args": {{"path": {str(table_path)!r}}}}},
                  "trainer": {{"callbacks": [{{"class_path": "benchmarks.timing.TrialTiming",
                                               "init_args": {{"folder": {str(timings)!r}}}}}]}}}}
        reports = []
        run_trial(context, TrialRequest(number=0, seed=0, config=config), reports.append)
        print(json.dumps({{"pid": os.getpid(), "reports": reports}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    reports = result["reports"]
    assert [r["val_acc"] for r in reports] == [0.1, 0.2, 0.3, 0.35] and reports[-1]["best_epoch"] == 4
    assert set(reports[-1]) == {"val_acc", "val_loss", "epoch", "best_value", "best_epoch"}
    assert list((tmp_path / "run" / "tensorboard" / "trial_0000").glob("events.out.tfevents.*.scalars"))
    from benchmarks.timing import read_timings

    [record] = read_timings(timings)
    assert record["worker"] == record["pid"] == result["pid"]
    assert record["first_step_at"] < record["ended_at"]
    assert read_timings(timings, drivers=(result["pid"],)) == []


def test_the_shipped_table_is_the_recorders_grid_with_real_curves():
    from benchmarks import record_curves

    table = CurveTable.read(record_curves.TABLE)
    assert table.header["grid"] == record_curves.GRID and table.header["epochs"] == 20
    runs = [run for config in table.configs.values() for run in config.runs]
    assert len(table.configs) >= 1000 and all(len(config.runs) == 2 for config in table.configs.values())
    assert all(run.epochs == 20 or run.error for run in runs)
    best, value = table.best("val_acc", "max")
    assert 0.95 < value <= 1.0 and min(config.best_value("val_acc", "max") for config in table.configs.values()) < 0.5


# ---- the spec


def test_the_replay_spec_validates_and_its_table_is_found_beside_it():
    from finesweep.search.spec import parse_spec

    spec = parse_spec(ROOT / "benchmarks" / "replay.yaml")
    assert spec.model.class_path == f"{REPLAY}.ReplayModel"
    assert Path(spec.data.init_args["path"]) == ROOT / "benchmarks" / "data" / "digits_curves.jsonl.gz"


def test_a_replay_spec_is_checked_against_the_replay_classes(table_path, write_spec):
    from finesweep.search.spec import SpecError, parse_spec

    path = write_spec(textwrap.dedent(f"""\
        name: bad_replay
        model: {{class_path: {REPLAY}.ReplayModel}}
        data: {{class_path: {REPLAY}.ReplayData, init_args: {{path: {table_path}, time_scale: -1}}}}
        metric: val_acc
        space:
          learnin_rate: {{type: float, low: 1.0e-4, high: 1.0e-1, log: true}}
          optimizer: {{type: categorical, choices: [adam, rmsprop]}}
        """))
    with pytest.raises(SpecError) as caught:
        parse_spec(path)
    found = {".".join(map(str, p.path)): p for p in caught.value.problems}
    assert set(found) == {"data.init_args.time_scale", "space.learnin_rate", "space.optimizer.choices.1"}
    assert "did you mean `learning_rate`?" in found["space.learnin_rate"].hint


# ---- the benchmark's bookkeeping


def _trial(number: int, lr: float, optimizer: str, state: str, epochs: int, value: float | None = None):
    return SimpleNamespace(number=number, params=params(lr, optimizer), user_attrs={"seed": number},
                           state=SimpleNamespace(name=state), value=value,
                           values=None if value is None else [value],  # as a FrozenTrial has both
                           intermediate_values={e: 0.0 for e in range(1, epochs + 1)})


def test_simulated_time_places_trials_on_free_slots_and_regret_follows_the_answer(table_path):
    from benchmarks.replay import regret_at, regret_curve, simulated_ends

    table = CurveTable.read(table_path)
    assert table.lookup(params(1e-2, "sgd")).epoch_seconds == pytest.approx(0.2)  # the median: no spike
    trials = [_trial(0, 1e-3, "sgd", "COMPLETE", 4, 0.35),      # 4 epochs x 0.1 s, ends at 0.4
              _trial(1, 1e-2, "adam", "COMPLETE", 4, 0.95),     # 4 x 0.2 s, ends at 0.8
              _trial(2, 1e-3, "adam", "PRUNED", 1),             # starts at 0.4 on the freed slot
              _trial(3, 1e-2, "sgd", "COMPLETE", 4, 0.64)]      # starts at 0.5, ends at 1.3
    ends = simulated_ends(trials, table, concurrency=2)
    assert [round(end, 3) for end, _ in ends] == [0.4, 0.8, 0.5, 1.3]
    curve = regret_curve(ends, table, "val_acc", "max")
    # The best configuration's true value is 0.955 (adam at 1e-2); sgd at 1e-3 is worth 0.345.
    assert curve == [(0.4, pytest.approx(0.61)), (0.8, pytest.approx(0.0))]
    assert math.isnan(regret_at(curve, 0.3)) and regret_at(curve, 0.5) == pytest.approx(0.61)
    assert regret_at(curve, math.inf) == pytest.approx(0.0)


# ---- a whole sweep


@pytest.mark.slow
def test_a_replay_sweep_runs_through_launch_and_its_best_retrains(tmp_path, local_ray):
    """Grid over the table's four configurations with ASHA, the replay model named by class path
    as any user model; its speed is measured by benchmarks/replay.py, not asserted here."""
    import optuna
    from finesweep.search.cli import main
    from finesweep.search.views.export import read_export

    write_table(tmp_path / "curves.jsonl.gz")
    spec = tmp_path / "replay.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: replay_test
        model: {{class_path: {REPLAY}.ReplayModel}}
        data: {{class_path: {REPLAY}.ReplayData, init_args: {{path: curves.jsonl.gz, time_scale: 0.05}}}}
        metric: val_acc
        space:
          learning_rate: {{type: categorical, choices: [1.0e-3, 1.0e-2]}}
          optimizer: {{type: categorical, choices: [adam, sgd]}}
        strategy: {{name: grid, seed: 0}}
        scheduler: {{name: asha, options: {{grace_period: 1, reduction_factor: 2}}}}
        budget: {{trials: 4, max_epochs: 4}}
        resources: {{cpus: 0.5, concurrency: 2}}
        """))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "run")]) == 0
    study = optuna.load_study(study_name="replay_test", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"} and len(study.trials) == 4
    best = read_export(tmp_path / "run" / "best.yaml")
    assert best.record["params"] == {"learning_rate": 1e-2, "optimizer": "adam"}
    assert study.best_value == pytest.approx(0.96 - 0.01 * (study.best_trial.user_attrs["seed"] % 2))
    # A LightningModule like any other: `train` retrains it, replaying the same seed's curve.
    assert main(["train", str(tmp_path / "run" / "best.yaml"), "--out", str(tmp_path / "retrained")]) == 0


@pytest.mark.slow
def test_hyperband_prunes_at_the_sweeps_concurrency(tmp_path, local_ray):
    """Ray's synchronous HyperBand waits for a bracket to fill with paused trials, which the
    concurrency limit never allows: it pruned none of 40 trials in the replay benchmark."""
    import numpy as np
    import optuna
    from finesweep.search.cli import main

    shipped = Path(__file__).parents[1] / "benchmarks" / "replay.yaml"
    text = shipped.read_text().replace("data/digits_curves.jsonl.gz", str(shipped.parent / "data" /
                                                                             "digits_curves.jsonl.gz"))
    text = text.replace("options: {grace_period: 2, reduction_factor: 3}", "options: {}")
    spec = tmp_path / "replay.yaml"
    spec.write_text(text.replace("name: asha", "name: hyperband").replace("time_scale: 0.05", "time_scale: 0.01"))
    # Reproducible: one trial at a time (results reach the scheduler in one order), and Ray's ASHA
    # draws each trial's bracket from numpy's global generator, seeded here. At 4 at a time the
    # count varied with the machine's load (6-10 alone, 3 once in a full run).
    np.random.seed(0)
    assert main(["sweep", str(spec), "--trials", "16", "--seed", "3", "--concurrency", "1",
                 "--out", str(tmp_path / "run")]) == 0
    study = optuna.load_study(study_name="digits_replay", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert len(states) == 16 and states.count("PRUNED") >= 4 and "COMPLETE" in states, states
