"""Per-trial seeding (search/strategies/seeding.py): a resumed sweep suggests what a straight one would,
each trial's end reaches the sampler that drew it, and the search space is not recomputed from
the whole history for every trial."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from finesweep.search.space import CategoricalParam, Condition, FloatParam, IntParam, SearchSpace
from finesweep.search.strategies import make_sampler
from finesweep.search.strategies.seeding import PerTrialSeededSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

NUMERIC = SearchSpace(params=(FloatParam("x", -5.0, 5.0), IntParam("n", 1, 9),
                              CategoricalParam("c", ("a", "b", "c"))))
SGD = (Condition("optimizer", ("sgd",)),)
CONDITIONAL = SearchSpace(params=(CategoricalParam("optimizer", ("adam", "sgd")), FloatParam("x", -5.0, 5.0),
                                  FloatParam("momentum", 0.5, 0.99, when=SGD)))


def objective(values: dict[str, Any]) -> float:
    return values["x"] ** 2 + values.get("n", 0) + 0.1 * values.get("momentum", 0.0)


def seeded(strategy: str, space: SearchSpace, options: dict[str, Any]) -> PerTrialSeededSampler:
    return PerTrialSeededSampler(lambda seed: make_sampler(strategy, space, options, seed), 11,
                                 share_search_space=not space.is_conditional)


def run(study: optuna.Study, space: SearchSpace, count: int, at_once: int = 2) -> None:
    """``count`` trials, ``at_once`` asked before the first of them is told (as concurrent
    trials are), the oldest told first."""
    live: list[tuple[optuna.Trial, dict[str, Any]]] = []
    for _ in range(count):
        trial = study.ask()
        live.append((trial, space.sample(trial)))
        if len(live) == at_once:
            trial, values = live.pop(0)
            study.tell(trial, objective(values))
    for trial, values in live:
        study.tell(trial, objective(values))


@pytest.mark.parametrize(("strategy", "space", "options"), [
    ("global", NUMERIC, {"n_startup_trials": 3}),
    ("global", CONDITIONAL, {"n_startup_trials": 3}),
    ("auto", NUMERIC, {"switch_after": 6}),
    ("random", NUMERIC, {}),
    ("local", NUMERIC, {}),
])
def test_a_resumed_study_suggests_what_a_straight_one_does(strategy, space, options):
    straight = optuna.create_study(sampler=seeded(strategy, space, options))
    run(straight, space, 5)  # the same trials running at each ask as in the resumed study
    run(straight, space, 7)
    resumed = optuna.create_study(sampler=seeded(strategy, space, options))
    run(resumed, space, 5)
    resumed.sampler = seeded(strategy, space, options)  # a fresh sampler, as after a killed driver
    run(resumed, space, 7)
    assert [t.params for t in resumed.trials] == [t.params for t in straight.trials]


def test_sharing_the_search_space_suggests_what_per_trial_inference_does():
    """The long-lived sampler's search space is the one each trial's own would infer."""
    studies = []
    for share in (True, False):
        study = optuna.create_study(sampler=PerTrialSeededSampler(
            lambda seed: make_sampler("global", NUMERIC, {"n_startup_trials": 3}, seed), 5, share_search_space=share))
        run(study, NUMERIC, 15, at_once=3)
        studies.append([t.params for t in study.trials])
    assert studies[0] == studies[1]


def test_the_trials_read_for_the_search_space_grow_with_the_new_trials_not_the_history(monkeypatch):
    """Counts the trials each IntersectionSearchSpace reads: a fresh one reads the whole study,
    a long-lived one those added since its last call (Optuna's caching). Recomputing the
    history for every trial read n^2/2 trials in all; shared, about n."""
    read = {"trials": 0}
    seen: dict[int, int] = {}
    keep: list[object] = []  # So that no two instances share an id().
    calculate = optuna.search_space.IntersectionSearchSpace.calculate

    def counting(self, study, use_cache=False):
        count = len(study.get_trials(deepcopy=False))
        read["trials"] += count - seen.get(id(self), 0)
        seen[id(self)] = count
        keep.append(self)
        return calculate(self, study, use_cache)

    monkeypatch.setattr(optuna.search_space.IntersectionSearchSpace, "calculate", counting)
    study = optuna.create_study(sampler=seeded("global", NUMERIC, {"n_startup_trials": 3}))
    trials = 40
    run(study, NUMERIC, trials)
    assert 0 < read["trials"] <= 2 * trials


class Recording(optuna.samplers.RandomSampler):
    def __init__(self, seed: int, ended: list[tuple[int, int]]) -> None:
        super().__init__(seed=seed)
        self.seed, self.ended = seed, ended

    def after_trial(self, study, trial, state, values) -> None:
        self.ended.append((trial.number, self.seed))


def test_each_trials_end_reaches_the_sampler_that_drew_it():
    from finesweep.search.strategies.seeding import trial_seed

    ended: list[tuple[int, int]] = []
    study = optuna.create_study(sampler=PerTrialSeededSampler(lambda seed: Recording(seed, ended), 3))
    first, second = study.ask(), study.ask()
    first.suggest_float("x", 0, 1)
    second.suggest_float("x", 0, 1)
    study.tell(first, 0.5)  # told after the second trial began: its sampler is the newest
    study.tell(second, 0.2)
    assert ended == [(0, trial_seed(3, 0)), (1, trial_seed(3, 1))]
    assert not study.sampler._samplers  # nothing kept for trials that ended
