"""Sections declared as types (search/spec/typed.py): budget, resources, scheduler and strategy
options are checked by jsonargparse against their declared types and bounds, and each refusal
is said in finesweep's words; the `when:` order comes from graphlib."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import pytest
from finesweep.search.schedulers import SCHEDULER_OPTIONS, SCHEDULERS
from finesweep.search.space import CategoricalParam, Condition, IntParam
from finesweep.search.spec import BudgetSpec, FieldChecks, ResourcesSpec
from finesweep.search.spec.conditions import order_by_conditions
from finesweep.search.spec.typed import Says, number_type, options_of, refusals
from finesweep.search.strategies import check_options


@dataclass(frozen=True)
class Declared:
    """A section made up for the test: its rules are only its type hints."""

    size: number_type(int, low=3, high=9) = 4
    share: Annotated[number_type(float, low=0, high=1), Says("a share in [0, 1]")] = 0.5
    mode: Literal["fast", "slow"] = "fast"
    flag: bool = False
    limit: number_type(float, low=0, low_open=True) | None = None


def test_a_declared_type_is_the_rule_no_code_per_field():
    accepted, refused = refusals(Declared, {"size": 10, "share": 1.5, "mode": "fats", "flag": "yes", "limit": None})
    assert accepted == {"limit": None}
    assert [r[:4] for r in refused] == [
        ("size", "an integer <= 9", "10", ""),
        ("share", "a share in [0, 1]", "1.5", ""),
        ("mode", "one of fast, slow", "'fats' (a string)", "did you mean `fast`?"),
        # jsonargparse would read "yes" as true, as from a command line; a YAML spec's string is not a boolean.
        ("flag", "true or false", "'yes' (a string)", ""),
    ]
    assert refusals(Declared, {"size": 3.0, "limit": 2})[0] == {"size": 3, "limit": 2}


def test_yaml_strings_that_look_like_numbers_are_refused_with_the_yaml_hint():
    _, [(key, expected, found, hint, _)] = refusals(BudgetSpec, {"time_limit_s": "1e-3"})
    assert (key, expected, found) == ("time_limit_s", "a number", "'1e-3' (a string)")
    assert "write 1.0e-3" in hint
    _, [(_, expected, _, _, _)] = refusals(BudgetSpec, {"trials": 2**60})
    assert expected == "an integer of at most 2**53 in size"
    _, [(_, expected, found, _, _)] = refusals(BudgetSpec, {"stop_after_failures": None})
    assert (expected, found) == ("an integer", "nothing (null)")


def test_resources_bounds_and_the_gpu_sharing_rule():
    _, refused = refusals(ResourcesSpec, {"gpus": 1.5, "cpus": 0, "workers": 2000, "placement": "spred"})
    assert [r[:3] for r in refused] == [
        ("gpus", "a fraction below 1 or a whole number of GPUs", "1.5"),
        ("cpus", "a number > 0", "0"),
        ("workers", "an integer <= 1024", "2000"),
        ("placement", "one of pack, spread", "'spred' (a string)"),
    ]
    assert refusals(ResourcesSpec, {"gpus": -1})[1] == [("gpus", "a number >= 0", "-1", "", True)]
    assert refusals(ResourcesSpec, {"gpus": 2, "cpus": 0.5})[1] == []


def test_scheduler_options_are_dataclasses_and_their_defaults_the_registry():
    assert SCHEDULERS["asha"] == options_of(SCHEDULER_OPTIONS["asha"]) == {
        "grace_period": 1, "reduction_factor": 3, "brackets": 1}
    _, refused = refusals(SCHEDULER_OPTIONS["asha"], {"reduction_factor": 1, "brackets": 1.5})
    assert [r[:2] for r in refused] == [("reduction_factor", "an integer >= 2"), ("brackets", "an integer")]


@pytest.mark.parametrize(("name", "options", "expected"), [
    ("auto", {"switch_after": 0}, [("switch_after", "an integer >= 1", "0")]),
    # A strategy option is handed to the sampler as written: 2.0 is not taken for an integer.
    ("auto", {"switch_after": 2.0}, [("switch_after", "an integer", "2.0")]),
    ("annealing", {"cooling": 1.5}, [("cooling", "a number in (0, 1]", "1.5")]),
    ("genetic", {"mutation_prob": "x"},
     [("mutation_prob", "a number in [0, 1], or null for 1 / number of parameters", "'x'")]),
    ("global", {"gp": "yes", "gp_max_share": 1}, [("gp", "true or false", "'yes'")]),
    # A type mistake first; bounds after, in the signature's order.
    ("annealing", {"radius": 0, "cooling": "x", "initial_temperature": 0},
     [("cooling", "a number", "'x'"), ("initial_temperature", "a number > 0", "0"),
      ("radius", "a number in (0, 1]", "0")]),
])
def test_strategy_options_are_checked_against_the_factory_signature(name, options, expected):
    assert check_options(name, options, None) == expected


def test_conditions_are_ordered_in_rounds_of_the_spec_order_and_cycles_reported_once():
    a = CategoricalParam("a", ("x", "y"), when=(Condition("c", (1,)),))
    b = IntParam("b", 1, 3)
    c = IntParam("c", 1, 3, when=(Condition("b", (1,)),))
    d = CategoricalParam("d", ("x",))
    checks = FieldChecks("spec.yaml", {})
    assert [p.name for p in order_by_conditions(checks, [a, b, c, d])] == ["b", "d", "c", "a"]
    assert checks.problems == []
    loop = [IntParam("p", 1, 3, when=(Condition("q", (1,)),)), IntParam("q", 1, 3, when=(Condition("p", (1,)),))]
    assert [p.name for p in order_by_conditions(checks, loop)] == ["p", "q"]
    [problem] = checks.problems
    assert problem.path == ("space", "p", "when", "q") and problem.found == "a cycle p -> q -> p"
