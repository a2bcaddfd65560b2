"""Every registered strategy passes one contract; then tests of what each strategy promises.

The contract (after Optuna's own ``pytest_samplers.py``): bounds, steps, log scales and native
Python types are respected, the same seed gives the same sequence and another seed a different
one, a pickled sampler goes on exactly as the original would, conditional parameters appear
exactly when active, trials that run at the same time get different configurations, and enqueued
configurations run first. Prior trials added from an earlier sweep steer every strategy that
learns from results (all but `random`), and `grid` skips the points they already ran.
No Ray and no training: the objectives are closed-form, and the whole file runs in seconds.
"""

from __future__ import annotations

import math
import pickle
import statistics
import warnings
from typing import Any

import optuna
import pytest
from finesweep.search.space import CategoricalParam, Condition, FloatParam, IntParam, SearchSpace
from finesweep.search.strategies import STRATEGIES, check_options, get_strategy, make_sampler
from finesweep.search.strategies._planning import PLANNED_BY
from finesweep.search.strategies.grid_search import grid_points

optuna.logging.set_verbosity(optuna.logging.ERROR)

SGD = (Condition("optimizer", ("sgd",)),)
SPACE = SearchSpace(params=(
    FloatParam("dropout", 0.0, 0.5),
    FloatParam("lr", 1e-5, 1e-1, log=True),
    FloatParam("decay", 0.0, 0.9, step=0.3),
    IntParam("layers", 1, 4),
    IntParam("width", 8, 512, log=True),
    IntParam("batch", 16, 128, step=16),
    CategoricalParam("optimizer", ("adam", "sgd")),
    FloatParam("momentum", 0.5, 0.99, when=SGD),
    CategoricalParam("nesterov", (True, False), when=SGD),
))
SMALL = SearchSpace(params=(  # 2 + 2 * 3 = 8 points: duplicates are likely unless avoided.
    CategoricalParam("optimizer", ("adam", "sgd")),
    IntParam("layers", 1, 2),
    FloatParam("momentum", 0.0, 1.0, step=0.5, when=SGD),
))
PLANNED = ("local", "genetic", "annealing", "grid", "heuristic")


def finite(space: SearchSpace) -> SearchSpace:
    """``space`` made finite and small enough for `grid`: a step for every float (a few log-spaced
    choices for log floats) and a few choices for wide int ranges."""
    params = []
    for p in space.params:
        if isinstance(p, FloatParam) and p.step is None:
            if p.log:
                choices = tuple(p.low * (p.high / p.low) ** (i / 3) for i in range(4))
                p = CategoricalParam(p.name, choices, p.when)
            else:
                p = FloatParam(p.name, p.low, p.high, step=(p.high - p.low) / 2, when=p.when)
        elif isinstance(p, IntParam) and len(p.grid_values()) > 8:
            p = CategoricalParam(p.name, tuple(p.grid_values()[:: len(p.grid_values()) // 3]), p.when)
        params.append(p)
    return SearchSpace(params=tuple(params))


def objective(params: dict[str, Any]) -> float:
    """Deterministic and cheap; lower is better; best near dropout 0.1, lr 1e-3, sgd."""
    value = (params["dropout"] - 0.1) ** 2 + (math.log10(params["lr"]) + 3) ** 2 / 10
    value += 0.1 * params["layers"] + (0.0 if params["optimizer"] == "sgd" else 0.2)
    return value + abs(params.get("momentum", 0.9) - 0.9)


def small_objective(params: dict[str, Any]) -> float:
    return params["layers"] + (params.get("momentum", 0.25) if params["optimizer"] == "sgd" else 0.5)


def make_study(name: str, space: SearchSpace, seed: int | None = 0, **options: Any) -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.create_study(sampler=make_sampler(name, space, options, seed))


def optimize(study: optuna.Study, space: SearchSpace, trials: int, fn=objective) -> list[dict[str, Any]]:
    sampled = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(trials):
            trial = study.ask()
            params = space.sample(trial)
            study.tell(trial, fn(params))
            sampled.append(params)
    return sampled


@pytest.fixture(params=sorted(STRATEGIES))
def strategy(request) -> str:
    return request.param


@pytest.fixture
def space(strategy) -> SearchSpace:
    return finite(SPACE) if strategy == "grid" else SPACE


class TestStrategyContract:
    def test_bounds_steps_log_and_native_types(self, strategy, space):
        for params in optimize(make_study(strategy, space), space, 30):
            for name, value in params.items():
                param = space[name]
                if isinstance(param, CategoricalParam):
                    assert value in param.choices
                    continue
                kind = int if isinstance(param, IntParam) else float
                assert type(value) is kind, (name, value)
                assert param.low <= value <= param.high, (name, value)
                if param.step is not None:
                    steps = (value - param.low) / param.step
                    assert abs(steps - round(steps)) < 1e-8, (name, value)

    def test_same_seed_same_sequence_other_seed_differs(self, strategy, space):
        first = optimize(make_study(strategy, space, seed=3), space, 25)
        again = optimize(make_study(strategy, space, seed=3), space, 25)
        other = optimize(make_study(strategy, space, seed=4), space, 25)
        assert first == again
        assert first != other

    def test_a_pickled_sampler_goes_on_as_the_original_would(self, strategy, space):
        study = make_study(strategy, space, seed=1)
        optimize(study, space, 12)
        twin = optuna.create_study(sampler=pickle.loads(pickle.dumps(study.sampler)))
        twin.add_trials(study.trials)  # The same history, system attributes included.
        assert optimize(twin, space, 5) == optimize(study, space, 5)

    def test_conditional_parameters_exactly_when_active(self, strategy, space):
        for params in optimize(make_study(strategy, space), space, 30):
            assert ("momentum" in params) == (params["optimizer"] == "sgd")
            assert ("nesterov" in params) == (params["optimizer"] == "sgd")

    @pytest.mark.parametrize("finished", [0, 20])
    def test_concurrent_trials_differ(self, strategy, space, finished):
        study = make_study(strategy, space)
        optimize(study, space, finished)
        running = []
        for _ in range(4):  # Asked, not told: all four are RUNNING together.
            trial = study.ask()
            running.append(space.sample(trial))
        keys = {tuple(sorted(p.items())) for p in running}
        assert len(keys) == len(running)

    def test_enqueued_configs_run_first(self, strategy, space):
        study = make_study(strategy, space)
        known = {"dropout": 0.25, "lr": 1e-3, "decay": 0.3, "layers": 2, "width": 64, "batch": 32,
                 "optimizer": "adam"}
        if strategy == "grid":
            known = {name: space[name].grid_values()[1] for name in known} | {"optimizer": "adam"}
        study.enqueue_trial(known)
        study.enqueue_trial({"optimizer": "sgd"})  # Partly known: the rest is sampled.
        first, second, *_ = optimize(study, space, 4)
        assert first == known
        assert second["optimizer"] == "sgd" and "momentum" in second


def _priors(mirrored: bool = False) -> list[optuna.trial.FrozenTrial]:
    """30 random trials of an earlier sweep of ``objective``; ``mirrored``: the same
    configurations with their values mirrored, so the best one counts as the worst."""
    earlier = make_study("random", SPACE, seed=11)
    optimize(earlier, SPACE, 30)
    values = [t.value for t in earlier.trials]
    return [optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                      value=max(values) + min(values) - t.value if mirrored else t.value)
            for t in earlier.trials]


@pytest.mark.parametrize("strategy", sorted(set(STRATEGIES) - {"random", "grid"}))
def test_prior_trials_steer_the_next_proposals(strategy):
    """The same prior configurations lead the sampler elsewhere once their values are mirrored:
    with the true values it proposes configurations much better than with mirrored ones."""
    def next_values(priors: list[optuna.trial.FrozenTrial]) -> list[float]:
        study = make_study(strategy, SPACE, seed=0)
        study.add_trials(priors)
        return [objective(params) for params in optimize(study, SPACE, 10)]

    true, mirrored = next_values(_priors()), next_values(_priors(mirrored=True))
    assert statistics.mean(true) < 0.7 * statistics.mean(mirrored), (true, mirrored)


def test_grid_skips_the_points_prior_trials_ran():
    earlier = make_study("random", SMALL, seed=0)
    ran = {tuple(p.values()) for p in optimize(earlier, SMALL, 4, small_objective)}
    study = make_study("grid", SMALL)
    study.add_trials(earlier.trials)
    rest = {tuple(p.values()) for p in optimize(study, SMALL, 8 - len(ran), small_objective)}
    assert not rest & ran and len(rest | ran) == 8


@pytest.mark.parametrize("strategy", PLANNED)
def test_planned_strategies_avoid_duplicates_in_a_small_space(strategy):
    study = make_study(strategy, SMALL)
    optimize(study, SMALL, 5, small_objective)
    running = [SMALL.sample(study.ask()) for _ in range(3)]
    seen = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(seen)) == len(seen) == 8, running


@pytest.mark.parametrize("strategy", ("local", "genetic", "annealing", "grid"))
def test_a_resumed_sweep_continues_as_an_uninterrupted_one(strategy):
    space = finite(SPACE) if strategy == "grid" else SPACE
    straight = optimize(make_study(strategy, space, seed=5), space, 30)
    resumed_study = make_study(strategy, space, seed=5)
    resumed = optimize(resumed_study, space, 20)
    # A new process: a fresh sampler, nothing but the study's trials carried over.
    resumed_study.sampler = make_sampler(strategy, space, {}, seed=5)
    resumed += optimize(resumed_study, space, 10)
    assert resumed == straight


def test_unknown_strategy_names_the_known_ones():
    with pytest.raises(KeyError, match="known strategies: .*auto.*global.*grid.*heuristic.*local"):
        get_strategy("locall")


def test_heuristic_is_genetic():
    """`heuristic` is the variant that beat random search everywhere (benchmarks/results/
    strategies.md, the docs say `genetic`): the same options, and the same proposals as genetic
    for a seed."""
    heuristic = optimize(make_study("heuristic", SPACE, seed=3), SPACE, 25)
    assert heuristic == optimize(make_study("genetic", SPACE, seed=3), SPACE, 25)
    assert heuristic != optimize(make_study("annealing", SPACE, seed=3), SPACE, 25)
    assert STRATEGIES["heuristic"].options == STRATEGIES["genetic"].options


def test_strategies_read_a_maximised_study_with_the_one_direction_rule():
    from finesweep.search.strategies._planning import best, history

    study = optuna.create_study(direction="maximize")
    for value in (0.2, 0.9, 0.5):
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=value))
    assert [o.loss for o in history(study)] == [-0.2, -0.9, -0.5]
    assert best(history(study)).number == 1


def test_every_factory_ends_with_a_keyword_only_seed():
    import inspect

    for strategy in STRATEGIES.values():
        parameters = list(inspect.signature(strategy.factory).parameters.values())
        assert parameters[-1].name == "seed" and parameters[-1].default is None
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[1:])


# --------------------------------------------------------------------------- local


START = {"dropout": 0.4, "lr": 1e-2, "decay": 0.6, "layers": 3, "width": 100, "batch": 64,
         "optimizer": "sgd", "momentum": 0.6, "nesterov": True}


def test_local_starts_at_start_from_then_stays_near_it():
    study = make_study("local", SPACE, start_from=START)
    first, *rest = optimize(study, SPACE, 20, lambda p: 1.0)  # Flat: the start stays the incumbent.
    assert first == START
    for params in rest:
        assert abs(params["dropout"] - START["dropout"]) < 0.5 * 0.5
        assert abs(math.log10(params["lr"]) - math.log10(START["lr"])) < 2
    kept = sum(p["optimizer"] == "sgd" for p in rest)
    assert kept >= 0.7 * len(rest)  # Categoricals mostly kept, sometimes mutated.


def test_local_refines_around_the_best_prior_trial():
    earlier = make_study("random", SPACE, seed=2)
    optimize(earlier, SPACE, 30)
    study = make_study("local", SPACE)
    study.add_trials(earlier.trials)
    best = earlier.best_params
    rest = optimize(study, SPACE, 15)
    near = [abs(p["dropout"] - best["dropout"]) < 0.15 for p in rest]
    assert sum(near) >= 0.7 * len(near)
    assert study.best_value <= earlier.best_value


def test_local_draws_a_parameter_inactive_at_the_incumbent_when_it_becomes_active():
    start = {k: v for k, v in START.items() if k not in ("momentum", "nesterov")} | {"optimizer": "adam"}
    study = make_study("local", SPACE, start_from=start, mutation_prob=1.0)
    for params in optimize(study, SPACE, 10, lambda p: 1.0)[1:]:
        assert params["optimizer"] == "sgd" and 0.5 <= params["momentum"] <= 0.99


def test_local_checks_start_from(tmp_path):
    problems = check_options("local", {"start_from": {"dropout": 0.9, "units": 3, "optimizer": "lion"}}, SPACE)
    assert {key for key, _, _ in problems} == {"start_from.dropout", "start_from.units", "start_from.optimizer"}
    (tmp_path / "empty.yaml").write_text("value: 1\n")
    for start in (str(tmp_path / "missing.yaml"), str(tmp_path / "empty.yaml"), 3):
        [(key, expected, found)] = check_options("local", {"start_from": start}, SPACE)
        assert key == "start_from" and expected and found
    with pytest.raises(ValueError, match="start_from.dropout"):
        make_sampler("local", SPACE, {"start_from": {"dropout": 0.9}}, seed=0)


def test_option_values_are_checked():
    problems = check_options("local", {"radius": "big", "mutation_prob": 2.0}, SPACE)
    assert [key for key, _, _ in problems] == ["radius", "mutation_prob"]
    assert check_options("genetic", {"population_size": 1}, SPACE)[0][0] == "population_size"
    assert check_options("annealing", {"cooling": 1.5}, SPACE)[0][0] == "cooling"
    assert check_options("auto", {"switch_after": 0}, SPACE)[0][0] == "switch_after"
    for prob in ("often", True, 1.5):
        assert [key for key, _, _ in check_options("genetic", {"mutation_prob": prob}, SPACE)] == ["mutation_prob"]
    assert check_options("genetic", {"mutation_prob": 0}, SPACE) == check_options("genetic", {}, SPACE) == []


# --------------------------------------------------------------------------- genetic


@pytest.mark.parametrize(("mutation_prob", "mutated"), [(0.0, False), (None, True)])
def test_genetic_mutation_prob_zero_never_mutates_and_none_is_one_gene_in_n(mutation_prob, mutated):
    """Two parents that both use adam: without mutation no child uses sgd; by default
    (1 / 9 parameters per gene) some do."""
    study = make_study("genetic", SPACE, seed=0, population_size=2, mutation_prob=mutation_prob)
    for dropout in (0.1, 0.3):
        study.enqueue_trial({"dropout": dropout, "lr": 1e-3, "decay": 0.3, "layers": 2, "width": 64, "batch": 32,
                             "optimizer": "adam"})
    values = iter([1.0, 2.0] + [5.0] * 20)  # The children are worse: the parents stay the population.
    children = optimize(study, SPACE, 22, lambda p: next(values))[2:]
    assert any(child["optimizer"] == "sgd" for child in children) is mutated


# --------------------------------------------------------------------------- grid


def test_grid_enumerates_exactly_the_finite_grid():
    expected = {("adam", 1), ("adam", 2)} | {("sgd", n, m) for n in (1, 2) for m in (0.0, 0.5, 1.0)}
    study = make_study("grid", SMALL)
    got = {tuple(p.values()) for p in optimize(study, SMALL, 8, small_objective)}
    assert got == expected
    assert len(grid_points(SMALL)) == 8


def test_grid_on_an_infinite_space_is_a_clear_problem():
    [(key, expected, found)] = check_options("grid", {}, SPACE)
    assert key == "" and "finite" in expected and "step" in expected
    assert "dropout" in found and "lr" in found
    assert check_options("grid", {}, finite(SPACE)) == []
    with pytest.raises(ValueError, match="finite space.*dropout"):
        make_sampler("grid", SPACE, {}, seed=0)


def test_grid_problem_is_reported_by_spec_validation_at_the_strategy_name():
    from finesweep.search.spec import FieldChecks
    from finesweep.search.spec.sections import check_strategy

    checker = FieldChecks("spec.yaml", {})
    check_strategy(checker, {"name": "grid"}, SPACE)
    [problem] = checker.problems
    assert problem.path == ("strategy", "name") and "finite" in problem.expected


# --------------------------------------------------------------------------- auto


def test_auto_switches_to_local_after_switch_after_trials():
    study = make_study("auto", SPACE, switch_after=8)
    optimize(study, SPACE, 14)
    planned = [t.system_attrs.get(PLANNED_BY) for t in study.trials]
    assert planned == [None] * 8 + ["local"] * 6


def test_auto_switches_early_when_improvement_stalls():
    study = make_study("auto", SPACE, switch_after=100, stall_after=3)
    optimize(study, SPACE, 14, lambda p: 1.0)  # Never improves after the first trial.
    planned = [t.system_attrs.get(PLANNED_BY) for t in study.trials]
    assert planned == [None] * 10 + ["local"] * 4


@pytest.mark.parametrize("trial_seconds, engines", [(600.0, {"gp"}), (0.001, {None})])
def test_auto_keeps_exploring_on_the_gp_when_trials_are_expensive(trial_seconds, engines):
    """Past `switch_after`, `auto` hands off to `local` only when its exploration runs on TPE;
    with trials long enough for the GP (600 s each here), it stays on the GP."""
    import datetime

    from finesweep.search.strategies.global_tpe import ENGINE_ATTR

    space = SearchSpace(params=(FloatParam("x", -5.0, 5.0), FloatParam("y", -5.0, 5.0)))
    study = make_study("auto", space, switch_after=8)
    start = datetime.datetime(2026, 1, 1)
    for index in range(10):
        x, y = (index % 5) - 2.0, (index // 5) - 0.5
        distributions = {name: optuna.distributions.FloatDistribution(-5.0, 5.0) for name in ("x", "y")}
        study.add_trial(optuna.trial.FrozenTrial(
            number=index, trial_id=index, state=optuna.trial.TrialState.COMPLETE, value=x ** 2 + y ** 2,
            datetime_start=start, datetime_complete=start + datetime.timedelta(seconds=trial_seconds),
            params={"x": x, "y": y}, distributions=distributions, user_attrs={}, system_attrs={},
            intermediate_values={}))
    optimize(study, space, 3, lambda p: p["x"] ** 2 + p["y"] ** 2)
    new_trials = study.trials[10:]
    assert {t.system_attrs.get(ENGINE_ATTR) for t in new_trials} == engines
    planned = {t.system_attrs.get(PLANNED_BY) for t in new_trials}
    assert planned == ({None} if engines == {"gp"} else {"local"})


def test_seeded_tpe_resumed_with_a_new_sampler_suggests_what_an_uninterrupted_run_would():
    """`global` is wrapped per trial (search.strategies.seeding), so a resume does not restart its stream."""
    from finesweep.search.strategies import make_sampler
    from finesweep.search.strategies.seeding import PerTrialSeededSampler

    space = SearchSpace(params=(FloatParam("x", -5.0, 5.0), IntParam("n", 1, 9),
                                CategoricalParam("c", ("a", "b", "c"))))

    def sampler():
        return PerTrialSeededSampler(lambda seed: make_sampler("global", space, {"n_startup_trials": 3}, seed), 11)

    def run(study, sampler_, count):
        study.sampler = sampler_
        for _ in range(count):
            trial = study.ask()
            values = space.sample(trial)
            study.tell(trial, values["x"] ** 2 + values["n"])

    straight = optuna.create_study()
    run(straight, sampler(), 8)
    resumed = optuna.create_study()
    run(resumed, sampler(), 4)
    run(resumed, sampler(), 4)  # a fresh sampler, as after a killed driver
    assert [t.params for t in resumed.trials] == [t.params for t in straight.trials]


def _add_timed_trials(study: optuna.Study, seconds_per_trial: float, count: int) -> None:
    """Finished trials that each took ``seconds_per_trial`` (add_trial keeps the timestamps)."""
    import datetime

    begin = datetime.datetime(2026, 1, 1)
    for index in range(count):
        x = (index % 7) - 3.0
        study.add_trial(optuna.trial.FrozenTrial(
            number=index, state=optuna.trial.TrialState.COMPLETE, value=x * x, datetime_start=begin,
            datetime_complete=begin + datetime.timedelta(seconds=seconds_per_trial),
            params={"x": x, "n": index % 5 + 1},
            distributions={"x": optuna.distributions.FloatDistribution(-5.0, 5.0),
                           "n": optuna.distributions.IntDistribution(1, 9)},
            user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=index))


@pytest.mark.parametrize(("trial_seconds", "engine"), [(120.0, "gp"), (1.0, "tpe")])
def test_global_uses_the_gp_only_where_its_cost_is_a_small_share_of_a_trial(trial_seconds, engine):
    from finesweep.search.strategies.global_tpe import ENGINE_ATTR, GlobalSampler, make_global_sampler

    space = SearchSpace(params=(FloatParam("x", -5.0, 5.0), IntParam("n", 1, 9)))
    sampler = make_global_sampler(space, n_startup_trials=4, seed=0)
    assert isinstance(sampler, GlobalSampler)
    study = optuna.create_study(sampler=sampler)
    _add_timed_trials(study, trial_seconds, 6)
    trial = study.ask()
    sampled = space.sample(trial)
    assert study._storage.get_trial(trial._trial_id).system_attrs[ENGINE_ATTR] == engine
    assert -5.0 <= sampled["x"] <= 5.0 and 1 <= sampled["n"] <= 9


def test_global_keeps_tpe_for_conditional_or_categorical_spaces():
    from finesweep.search.strategies.global_tpe import GlobalSampler, make_global_sampler

    mixed = SearchSpace(params=(FloatParam("x", 0.0, 1.0), CategoricalParam("c", ("a", "b"))))
    assert not isinstance(make_global_sampler(mixed, seed=0), GlobalSampler)


def test_local_restarts_from_a_fresh_random_design_once_its_region_collapses():
    """Never improving, `local`'s region halves to nothing (about trial 34 in a 2-d space): it
    then starts again from new random points instead of stepping ever closer to the same one."""
    space = SearchSpace(params=(FloatParam("x", 0.0, 1.0), FloatParam("y", 0.0, 1.0)))
    points = optimize(make_study("local", space), space, 50, lambda p: 1.0)
    first = (points[0]["x"], points[0]["y"])
    distance = [math.dist((p["x"], p["y"]), first) for p in points]
    assert sorted(distance[10:20])[5] < 0.1, "refining near the first point at first"
    assert sorted(distance[-10:])[5] > 0.2, "after the restart, the search left that point"
