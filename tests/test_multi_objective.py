"""Several objectives and constraints without Ray: the study, the samplers, the ledger's record
of each trial's objective vector and violations, and the views' Pareto front."""

from __future__ import annotations

import statistics

import optuna
import pytest
from finesweep.search.ledger import TrialLedger
from finesweep.search.spec import parse_spec
from finesweep.search.strategies.seeding import build_sampler
from finesweep.search.study import open_study

# Nothing here trains: the spec only names a model and data of the right kinds.
TASK = """\
import pytorch_lightning as pl


class TwoWay(pl.LightningModule):
    def __init__(self, width: float = 0.5) -> None:
        super().__init__()
        self.width = width


class TwoWayData(pl.LightningDataModule):
    pass
"""

SPEC = """\
name: mo
model: {class_path: mo_task.TwoWay}
data: {class_path: mo_task.TwoWayData}
objectives: {val_acc: max, size: min}
constraints: {size: {max: 80}}
space:
  width: {type: float, low: 0.0, high: 1.0}
strategy: {name: STRATEGY, seed: 0}
scheduler: none
budget: {trials: 4, max_epochs: 2}
"""

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def make_spec(tmp_path):
    (tmp_path / "mo_task.py").write_text(TASK)

    def make(strategy: str = "global", text: str = SPEC):
        path = tmp_path / f"{strategy}.yaml"
        path.write_text(text.replace("STRATEGY", strategy))
        return parse_spec(path)
    return make


def _epoch(epoch: int, acc: float, size: float, best_acc: float, best_size: float) -> dict:
    return {"epoch": epoch, "val_acc": acc, "size": size, "best_value": best_acc, "best_epoch": epoch,
            "best:val_acc": best_acc, "best:size": best_size}


@pytest.mark.parametrize("strategy,sampler", [("global", "GlobalSampler"), ("heuristic", "NSGAIISampler"),
                                              ("random", "RandomSampler"), ("grid", None)])
def test_each_strategy_gets_a_sampler_for_several_objectives(make_spec, strategy, sampler):
    text = SPEC.replace("{type: float, low: 0.0, high: 1.0}", "{type: float, low: 0.0, high: 1.0, step: 0.25}")
    built = build_sampler(make_spec(strategy, text))
    inner = built.sampler_for(0)  # PerTrialSeededSampler: a seeded strategy builds one per trial
    if sampler is not None:
        assert type(inner).__name__ == sampler


def test_three_objectives_run_nsga_iii(make_spec):
    text = SPEC.replace("objectives: {val_acc: max, size: min}", "objectives: {val_acc: max, size: min, lat: min}")
    assert type(build_sampler(make_spec("heuristic", text)).sampler_for(0)).__name__ == "NSGAIIISampler"


def test_the_ledger_records_the_vector_and_violations_and_the_sampler_reads_them(make_spec, tmp_path):
    spec = make_spec("global")
    study = open_study(spec, "sqlite:///:memory:", build_sampler(spec))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    ledger = TrialLedger(study, spec, seed_base=0, run_dir=tmp_path)
    for runner, (acc, size) in {"a": (0.9, 90.0), "b": (0.5, 50.0)}.items():
        ledger.hand_out(runner)
        ledger.record(runner, _epoch(1, acc / 2, size, acc / 2, size))
        ledger.complete(runner, _epoch(2, acc, size, acc, size))
    ledger.hand_out("c")
    ledger.complete("c", {"epoch": 2, "val_acc": 0.4, "best_value": 0.4, "best_epoch": 2, "best:val_acc": 0.4})
    a, b, c = study.get_trials(deepcopy=False)
    assert a.state.name == b.state.name == "COMPLETE"
    # Optuna's own record of the violations (Trial.set_constraint), which TPE and NSGA-II read.
    assert a.values == [0.9, 90.0] and a.constraints == {"size.max": 10.0}
    assert b.values == [0.5, 50.0] and b.constraints == {"size.max": -30.0}
    assert c.state.name == "FAIL" and c.user_attrs["fail_reason"] == "objective 'size' was not logged"
    assert c.constraints == {}
    # The next suggestion reads them without complaint (TPE's infeasible split).
    for runner in "defghijkl":
        ledger.hand_out(runner)


def test_a_single_objective_with_a_constraint_keeps_one_direction(make_spec, tmp_path):
    text = SPEC.replace("objectives: {val_acc: max, size: min}", "metric: val_acc\nmode: max")
    spec = make_spec("heuristic", text)
    study = open_study(spec, "sqlite:///:memory:", build_sampler(spec))
    ledger = TrialLedger(study, spec, seed_base=0, run_dir=tmp_path)
    ledger.hand_out("a")
    ledger.complete("a", _epoch(2, 0.7, 60.0, 0.7, 60.0))
    trial = study.trials[0]
    assert trial.value == 0.7 and trial.constraints == {"size.max": -20.0}
    assert type(study.sampler.sampler_for(0)).__name__ == "NSGAIISampler"


def test_mo_asha_reads_the_specs_objectives_directions_and_constraints(make_spec):
    from finesweep.search.schedulers.mo_asha import SweepRungs

    text = SPEC.replace("scheduler: none", "scheduler: {name: asha, options: {reduction_factor: 2}}")
    text = text.replace("max_epochs: 2", "max_epochs: 4")
    rungs = SweepRungs(make_spec("random", text))
    assert [b.rungs for b in rungs.rungs.brackets] == [[1, 2]]
    # val_acc is maximised: the higher accuracy at equal size goes on, the lower one stops.
    assert rungs.goes_on("a", {"epoch": 1, "val_acc": 0.8, "size": 50.0})
    assert not rungs.goes_on("b", {"epoch": 1, "val_acc": 0.3, "size": 50.0})
    # Better in both but over the size bound (80): infeasible ranks last and stops.
    assert not rungs.goes_on("c", {"epoch": 1, "val_acc": 0.9, "size": 90.0})
    assert rungs.goes_on("d", {"epoch": 3, "val_acc": 0.0, "size": 99.0})  # not a rung
    assert rungs.goes_on("e", {"epoch": 1, "val_acc": 0.1})  # no size: not judged
    text = text.replace("{name: asha, options: {reduction_factor: 2}}", "hyperband")
    assert [b.rungs for b in SweepRungs(make_spec("random", text)).rungs.brackets] == [[1, 3], [3]]


def test_a_resume_refuses_changed_objectives_and_lists_changed_constraints(make_spec):
    from finesweep.search.resume import compare_specs

    old = make_spec("global")
    swapped = make_spec("random", SPEC.replace("{val_acc: max, size: min}", "{size: min, val_acc: max}"))
    bounded = make_spec("random", SPEC.replace("{size: {max: 80}}", "{size: {max: 60}}"))
    assert any("objectives changed" in c for c in compare_specs(old, swapped).incompatible)
    changes = compare_specs(old, bounded)
    assert not changes.incompatible and any("constraints" in c for c in changes.compatible)


def test_global_hands_trials_to_the_gp_with_two_objectives_and_a_constraint():
    """Where the GP pays (here: told it always does), `global` runs Optuna's GP (log EHVI) on a
    study of two objectives with constraints, after TPE's start-up trials."""
    import warnings

    from finesweep.search.space import FloatParam, SearchSpace
    from finesweep.search.strategies import ENGINE_ATTR
    from finesweep.search.strategies.multi_objective import make_multi_objective_sampler

    space = SearchSpace(params=(FloatParam("x", 0.0, 1.0), FloatParam("y", 0.0, 1.0)))
    sampler = make_multi_objective_sampler("global", space, {"gp_max_share": 1e6, "n_startup_trials": 4},
                                           objectives=2, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(7):
            trial = study.ask()
            params = space.sample(trial)
            trial.set_constraint("y.max", params["y"] - 0.8)
            study.tell(trial, [params["x"], params["y"] + (1 - params["x"]) ** 2])
    engines = [t.system_attrs.get(ENGINE_ATTR) for t in study.trials]
    assert engines[:4] == ["tpe"] * 4 and engines[4:] == ["gp"] * 3


def _done(number: int, acc: float, size: float, violation: float = -1.0):
    from optuna.trial import TrialState, create_trial

    trial = create_trial(state=TrialState.COMPLETE, values=[acc, size], params={}, distributions={},
                         user_attrs={"watched": {"val_acc": acc, "size": size}},
                         system_attrs={"constraints:size.max": violation})
    trial.number = number
    return trial


def test_the_front_skips_dominated_and_infeasible_trials_and_a_rule_picks_from_it():
    from finesweep.search.views.pareto_front import choose, front_lines, hypervolume_over_trials, pareto_front

    trials = [_done(0, 0.9, 90.0), _done(1, 0.8, 40.0), _done(2, 0.7, 45.0), _done(3, 0.6, 10.0),
              _done(4, 0.95, 5.0, violation=3.0), _done(5, 0.3, 8.0)]
    found = pareto_front(trials, (("val_acc", "max"), ("size", "min")))
    assert [t.number for t in found.members] == [0, 1, 3, 5]  # 2 dominated by 1; 4 infeasible
    # The knee: scaled over the front, trial 3 (0.5 + 0.02) sums less than 1 (0.17 + 0.39).
    assert choose(found, None)[0].number == 3
    chosen, rule = choose(found, {"val_acc": "max", "subject_to": {"size": {"max": 50.0}}})
    assert chosen.number == 1 and rule == "select: the max val_acc on the Pareto front, size <= 50"
    assert choose(found, {"size": "min"})[0].number == 5
    chosen, rule = choose(found, {"val_acc": "max", "subject_to": {"size": {"max": 1.0}}})
    assert chosen.number == 3 and "no front trial within the bounds: the knee instead" in rule
    lines = front_lines(found, *choose(found, None))
    assert lines[0].startswith("Pareto front: 4 of 6 COMPLETE trials (1 infeasible)")
    curve = hypervolume_over_trials(trials, found)
    assert [n for n, _ in curve] == [0, 1, 2, 3, 4, 5]
    assert curve[2][1] == curve[1][1] < curve[3][1] and curve[4][1] == curve[3][1]  # dominated, infeasible add 0


def test_local_walks_around_a_chosen_pareto_point_and_finds_trials_better_in_both(make_spec):
    """`local` with several objectives needs a start point; it scalarises the objectives around
    the trial that ran it (Chebyshev), so only trials that improve on it in both are successes."""
    import warnings

    from finesweep.search.space import FloatParam, SearchSpace
    from finesweep.search.strategies._planning import history
    from finesweep.search.strategies.multi_objective import make_multi_objective_sampler

    text = SPEC.replace("strategy: {name: STRATEGY, seed: 0}",
                        "strategy: {name: local, seed: 0, options: {start_from: {width: 0.3}}}")
    assert make_spec("local", text).strategy.name == "local"  # accepted with a start point
    space = SearchSpace(params=(FloatParam("x", 0.0, 1.0), FloatParam("y", 0.0, 1.0)))
    start = {"x": 0.5, "y": 0.5}
    sampler = make_multi_objective_sampler("local", space, {"start_from": start, "radius": 0.1}, objectives=2, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(30):
            trial = study.ask()
            p = space.sample(trial)
            # x trades one objective for the other; a lower y improves both.
            study.tell(trial, [p["x"] - p["y"], p["x"] + p["y"]])
    trials = study.trials
    assert trials[0].params == start
    losses = {o.number: o.loss for o in history(study, start)}
    assert losses[0] == 0.0
    better = [t for t in trials if losses[t.number] < 0]
    worse_in_one = [t for t in trials if (t.values[0] > trials[0].values[0]) != (t.values[1] < trials[0].values[1])]
    assert better and worse_in_one  # both kinds were tried
    assert all(t.values[0] > trials[0].values[0] and t.values[1] < trials[0].values[1] for t in better)
    assert statistics.mean(t.params["y"] for t in trials[-10:]) < 0.45  # it walked down y, where both improve


def test_local_without_a_start_point_is_refused_for_several_objectives(make_spec):
    from finesweep.search.spec import SpecError

    with pytest.raises(SpecError, match="start_from"):
        make_spec("local")


def test_one_objective_with_constraints_chooses_the_best_feasible_trial():
    from finesweep.search.views.pareto_front import choose, pareto_front

    trials = [_done(0, 0.9, 90.0, violation=10.0), _done(1, 0.8, 40.0), _done(2, 0.7, 45.0)]
    found = pareto_front(trials, (("val_acc", "max"),))
    assert [t.number for t in found.members] == [1]
    assert choose(found, None) == (trials[1], "the best trial that meets every constraint")
