"""Spec validation: every spec under spaces/ parses, and every kind of mistake is reported
before anything runs, with its file, line and key path, all problems in one error.

Each bad spec below is the valid ``BASE`` with one mistake, so a case that reports more than
its own problem (a cascade, a crash, a silent acceptance) fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import yaml
from finesweep.models.tasks import TASKS
from finesweep.search.schedulers import SCHEDULERS
from finesweep.search.spec import SpecError, parse_spec
from finesweep.search.spec.loading import MAX_SPEC_BYTES, MAX_SPEC_DEPTH, MAX_SPEC_NODES, SPEC_DIR_RECORD
from finesweep.search.spec.space_rules import MAX_CHOICES
from finesweep.search.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted({*ROOT.glob("spaces/**/*.yaml"), *ROOT.glob("spaces/**/*.yml")})

BASE = """\
name: digits_small
task: image_classification
metric: val_acc
space:
  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  optimizer: {type: categorical, choices: [adam, sgd]}
  momentum: {type: float, low: 0.5, high: 0.99, when: {optimizer: sgd}}
  conv_layers: {type: int, low: 1, high: 3}
  dropout: {type: float, low: 0.0, high: 0.5}
  batch_size: 32
strategy: {name: global, seed: 0}
scheduler: {name: asha, options: {reduction_factor: 3}}
budget: {trials: 4, max_epochs: 2}
resources: {cpus: 1, gpus: 0, concurrency: 2}
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    """``text`` with its one occurrence of ``old`` replaced; loud if the table drifts from BASE."""
    if text.count(old) != 1:
        raise ValueError(f"{old!r} occurs {text.count(old)} times in the base spec, not once")
    return text.replace(old, new)


def line_of(text: str, start: str) -> int:
    """The 1-based number of the only line of ``text`` that starts (after indentation) with ``start``."""
    numbers = [n for n, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith(start)]
    if len(numbers) != 1:
        raise ValueError(f"{start!r} starts lines {numbers}, expected exactly one")
    return numbers[0]


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    key: str  # the key path as rendered, e.g. space.learning_rate.low
    # Where the problem points: how that line starts, a line number, or None (no line).
    at: str | int | None
    says: tuple[str, ...] = ()  # further text the problem's message must contain

    def line(self) -> int | None:
        return line_of(self.text, self.at) if isinstance(self.at, str) else self.at


HIDDEN_1001 = "[" + ", ".join(str(n) for n in range(1, MAX_CHOICES + 2)) + "]"
BILLION_LAUGHS = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{new}: &{new} [{', '.join([f'*{old}'] * 9)}]\n" for old, new in zip("abcdefgh", "bcdefghi", strict=True)
)

BAD_SPECS = [
    # ---- top level and YAML itself
    Bad("unknown_top_level_key", edit("scheduler:", "schedular:"), "schedular", "schedular:",
        ("unknown key 'schedular'", "did you mean `scheduler`?")),
    Bad("top_level_not_a_mapping", "- name: x\n- task: y\n", "(top level)", 1,
        ("expected a mapping of spec keys", "a list")),
    Bad("empty_file", "# nothing but a comment\n", "(top level)", 1, ("nothing (null)",)),
    Bad("yaml_syntax_error", edit("metric: val_acc", "metric: val_acc: oops"), "(top level)",
        "metric: val_acc: oops", ("expected valid YAML", "mapping values are not allowed")),
    Bad("python_object_tag", edit("name: digits_small", 'name: !!python/object/apply:os.getcwd []'),
        "(top level)", "name:", ("could not determine a constructor", "never loaded")),
    Bad("billion_laughs", BILLION_LAUGHS, "(top level)", None,
        (f"at most {MAX_SPEC_NODES} YAML nodes", "aliases")),
    Bad("file_over_limit", BASE + "#" * MAX_SPEC_BYTES + "\n", "(top level)", None,
        (f"at most {MAX_SPEC_BYTES} bytes",)),
    Bad("deep_nesting", BASE + "description: " + "[" * 2000 + "]" * 2000 + "\n", "(top level)", "description:",
        (f"nested at most {MAX_SPEC_DEPTH} levels deep",)),
    Bad("too_many_nodes", BASE + "description: {" + ", ".join(f"k{i}: {i}" for i in range(MAX_SPEC_NODES)) + "}\n",
        "(top level)", None, (f"at most {MAX_SPEC_NODES} YAML nodes", "a few hundred")),
    Bad("duplicate_key", edit("budget: {trials: 4, max_epochs: 2}",
                              "budget: {trials: 4, max_epochs: 2}\nbudget: {trials: 40}"),
        "budget", "budget: {trials: 40}", ("each key once", "first is on line 13")),
    Bad("missing_metric", edit("metric: val_acc\n", ""), "metric", 1, ("a `metric:` entry", "none")),
    Bad("name_with_slash", edit("name: digits_small", "name: runs/digits"), "name", "name:",
        ("'runs/digits'", "run directory")),
    Bad("name_with_newline", edit("name: digits_small", 'name: "digits\\n"'), "name", "name:",
        ("'digits\\n'",)),
    Bad("description_not_text", edit("task:", "description: [a, b]\ntask:"), "description",
        "description:", ("expected a string",)),
    # ---- task, data, metric, mode
    Bad("unknown_task", edit("task: image_classification", "task: image_clasification"), "task",
        "task:", (", ".join(sorted(TASKS)), "did you mean `image_classification`?")),
    Bad("data_unknown_key", edit("metric: val_acc", "data: {val_frac: 0.1}\nmetric: val_acc"),
        "data.val_frac", "data:", ("unknown key 'val_frac'", "did you mean `val_fraction`?")),
    Bad("data_out_of_bounds", edit("metric: val_acc", "data:\n  test_fraction: 0.9\nmetric: val_acc"),
        "data.test_fraction", "test_fraction:", ("<= 0.5", "0.9")),
    Bad("metric_not_reported", edit("metric: val_acc", "metric: val_f1"), "metric", "metric:",
        ("val_acc, val_loss", "'val_f1'")),
    Bad("mode_contradicts_metric", edit("metric: val_acc", "metric: val_acc\nmode: min"), "mode",
        "mode:", ("expected max (val_acc improves that way)", "found 'min'")),
    Bad("mode_unknown", edit("metric: val_acc", "metric: val_acc\nmode: maximize"), "mode", "mode:",
        ("one of min, max", "'maximize'")),
    # ---- the space: names, types, bounds
    Bad("param_name_typo", edit("learning_rate:", "learning_rat:"), "space.learning_rat",
        "learning_rat:", ("unknown parameter 'learning_rat'", "did you mean `learning_rate`?")),
    Bad("unknown_param_type", edit("{type: int, low: 1", "{type: integer, low: 1"),
        "space.conv_layers.type", "conv_layers:", ("'integer'", "did you mean `int`?")),
    Bad("param_without_type", edit("dropout: {type: float, low", "dropout: {low"), "space.dropout",
        "dropout:", ("a mapping with `type:`", "add `type: float`")),
    Bad("unknown_param_key", edit("high: 3}", "high: 3, choices: [1, 2]}"),
        "space.conv_layers.choices", "conv_layers:", ("unknown key 'choices'",)),
    Bad("low_above_high", edit("low: 0.0, high: 0.5}", "low: 0.5, high: 0.1}"), "space.dropout",
        "dropout:", ("low <= high", "low=0.5, high=0.1")),
    Bad("log_with_zero_low", edit("low: 1.0e-4, high: 1.0e-1, log: true", "low: 0, high: 1.0e-1, log: true"),
        "space.learning_rate.low", "learning_rate:", ("low > 0 on a log scale", "found 0")),
    Bad("step_on_log_float", edit("log: true}", "log: true, step: 1.0e-3}"),
        "space.learning_rate.step", "learning_rate:", ("no step on a log-scale float",)),
    Bad("int_param_float_bounds", edit("{type: int, low: 1, high: 3}", "{type: int, low: 1.5, high: 3}"),
        "space.conv_layers.low", "conv_layers:", ("expected an integer", "found 1.5")),
    Bad("float_param_on_int_setting", edit("{type: int, low: 1, high: 3}", "{type: float, low: 1, high: 3}"),
        "space.conv_layers.type", "conv_layers:", ("int (this setting takes whole numbers)",)),
    Bad("number_param_on_named_setting", edit("{type: categorical, choices: [adam, sgd]}",
                                              "{type: float, low: 0, high: 1}"),
        "space.optimizer.type", "optimizer:", ("categorical (this setting takes names)",)),
    Bad("bound_outside_setting_range", edit("low: 0.0, high: 0.5}", "low: 0.0, high: 1.5}"),
        "space.dropout.high", "dropout:", ("<= 0.95", "1.5")),
    Bad("exponent_read_as_string", edit("low: 1.0e-4, high", "low: 1e-3, high"),
        "space.learning_rate.low", "learning_rate:", ("'1e-3' (a string)", "write 1.0e-3")),
    Bad("unsigned_exponent_read_as_string", edit("high: 1.0e-1,", "high: 1.0e1,"),
        "space.learning_rate.high", "learning_rate:", ("'1.0e1' (a string)", "write 1.0e+1")),
    Bad("quoted_number", edit("max_epochs: 2", 'max_epochs: "2"'), "budget.max_epochs", "budget:",
        ("'2' (a string)", "remove the quotes")),
    # ---- categorical choices
    Bad("empty_choices", edit("[adam, sgd]", "[]"), "space.optimizer.choices", "optimizer:",
        ("a non-empty list of choices",)),
    Bad("duplicate_choices", edit("[adam, sgd]", "[adam, sgd, adam]"), "space.optimizer.choices",
        "optimizer:", ("distinct choices", "'adam' again")),
    Bad("equal_numeric_choices", edit("dropout: {type: float, low: 0.0, high: 0.5}",
                                      "dropout: {type: categorical, choices: [0, 0.0, 0.5]}"),
        "space.dropout.choices", "dropout:", ("distinct choices", "0.0 again")),
    Bad("too_many_choices", edit("batch_size: 32", f"hidden_units: {{type: categorical, choices: {HIDDEN_1001}}}"),
        "space.hidden_units.choices", "hidden_units:", (f"at most {MAX_CHOICES} choices", f"{MAX_CHOICES + 1}")),
    Bad("choice_not_valid_for_setting", edit("[adam, sgd]", "[adam, rmsprop]"),
        "space.optimizer.choices[1]", "optimizer:", ("one of adam, adamw, sgd", "'rmsprop'")),
    Bad("nested_choice", edit("[adam, sgd]", "[adam, [sgd]]"), "space.optimizer.choices[1]",
        "optimizer:", ("a plain value", "a list ['sgd']")),
    # ---- fixed values
    Bad("fixed_value_wrong_type", edit("batch_size: 32", "batch_size: big"), "space.batch_size",
        "batch_size:", ("expected an integer", "'big' (a string)")),
    Bad("fixed_value_out_of_bounds", edit("batch_size: 32", "batch_size: 32\n  label_smoothing: 2.0"),
        "space.label_smoothing", "label_smoothing:", ("<= 0.5", "2.0")),
    Bad("fixed_dropout_out_of_bounds", edit("dropout: {type: float, low: 0.0, high: 0.5}", "dropout: 2.0"),
        "space.dropout", "dropout:", ("<= 0.95", "2.0")),
    Bad("fixed_value_a_list", edit("batch_size: 32", "batch_size: [32, 64]"), "space.batch_size",
        "batch_size:", ("a list [32, 64]", "type: categorical")),
    Bad("fixed_value_a_mapping", edit("batch_size: 32", "batch_size: {value: {size: 32}}"),
        "space.batch_size.value", "batch_size:", ("a plain value", "a dict")),
    Bad("fixed_name_not_valid", edit("batch_size: 32", "batch_size: 32\n  activation: swish"),
        "space.activation", "activation:", ("one of relu, gelu, silu, tanh", "'swish'")),
    # ---- conditions
    Bad("condition_on_missing_param", edit("when: {optimizer: sgd}", "when: {optimiser: sgd}"),
        "space.momentum.when.optimiser", "momentum:", ("not searched here", "did you mean `optimizer`?")),
    Bad("condition_on_fixed_param", edit("when: {optimizer: sgd}", "when: {batch_size: 32}"),
        "space.momentum.when.batch_size", "momentum:", ("'batch_size', which is fixed to 32",)),
    Bad("condition_value_impossible", edit("when: {optimizer: sgd}", "when: {optimizer: rmsprop}"),
        "space.momentum.when.optimizer", "momentum:", ("a value optimizer can take", "'rmsprop'")),
    Bad("condition_int_value_off_grid", edit("when: {optimizer: sgd}", "when: {conv_layers: 7}"),
        "space.momentum.when.conv_layers", "momentum:", ("an integer from 1 to 3", "found 7")),
    Bad("condition_empty_values", edit("when: {optimizer: sgd}", "when: {optimizer: []}"),
        "space.momentum.when.optimizer", "momentum:", ("at least one value", "never searched")),
    Bad("condition_on_float", edit("when: {optimizer: sgd}", "when: {dropout: 0.1}"),
        "space.momentum.when.dropout", "momentum:", ("a condition on a categorical or int parameter",)),
    Bad("condition_on_itself", edit("when: {optimizer: sgd}", "when: {momentum: 0.9}"),
        "space.momentum.when.momentum", "momentum:", ("a condition on itself",)),
    Bad("condition_cycle", edit("choices: [adam, sgd]}", "choices: [adam, sgd], when: {conv_layers: 2}}",
                                edit("high: 3}", "high: 3, when: {optimizer: adam}}")),
        "space.optimizer.when.conv_layers", "optimizer:",
        ("conditions without cycles", "optimizer -> conv_layers -> optimizer")),
    Bad("condition_not_a_mapping", edit("when: {optimizer: sgd}", "when: sgd"), "space.momentum.when",
        "momentum:", ("a mapping {parameter: value or [values]}",)),
    # ---- strategy and scheduler
    Bad("unknown_strategy", edit("name: global", "name: gloabl"), "strategy.name", "strategy:",
        (", ".join(sorted(STRATEGIES)), "did you mean `global`?")),
    Bad("unknown_strategy_option", edit("seed: 0}", "seed: 0, options: {n_startup: 3}}"),
        "strategy.options.n_startup", "strategy:", ("did you mean `n_startup_trials`?",)),
    Bad("option_on_strategy_without_options",
        edit("{name: global, seed: 0}", "{name: random, seed: 0, options: {n_startup_trials: 3}}"),
        "strategy.options.n_startup_trials", "strategy:", ("expected no keys here",)),
    Bad("wrong_option_type", edit("seed: 0}", "seed: 0, options: {n_startup_trials: many}}"),
        "strategy.options.n_startup_trials", "strategy:", ("an integer", "'many'")),
    Bad("strategy_option_beside_name", edit("{name: global, seed: 0}", "{name: local, start_from: best.yaml}"),
        "strategy.start_from", "strategy:", ("beside `name:`", "start_from is an option of local: write it under "
                                            "`options:`")),
    Bad("scheduler_option_beside_name", edit("{name: asha, options: {reduction_factor: 3}}",
                                             "{name: asha, grace_period: 2}"),
        "scheduler.grace_period", "scheduler:", ("grace_period is an option of asha: write it under `options:`",)),
    Bad("negative_seed", edit("seed: 0}", "seed: -1}"), "strategy.seed", "strategy:", (">= 0",)),
    Bad("seed_beyond_numpy", edit("seed: 0}", "seed: 5000000000}"), "strategy.seed", "strategy:",
        ("<= 2147483647",)),
    Bad("unknown_scheduler", edit("name: asha", "name: hyperbandit"), "scheduler.name", "scheduler:",
        (", ".join(sorted(SCHEDULERS)), "did you mean `hyperband`?")),
    Bad("scheduler_reduction_factor_one", edit("reduction_factor: 3", "reduction_factor: 1"),
        "scheduler.options.reduction_factor", "scheduler:", ("an integer >= 2",)),
    Bad("unknown_scheduler_option", edit("reduction_factor: 3", "reduction: 3"),
        "scheduler.options.reduction", "scheduler:", ("did you mean `reduction_factor`?",)),
    # ---- budget, resources, storage
    Bad("zero_trials", edit("trials: 4", "trials: 0"), "budget.trials", "budget:", (">= 1", "found 0")),
    Bad("negative_trials", edit("trials: 4", "trials: -3"), "budget.trials", "budget:", (">= 1",)),
    Bad("huge_trials", edit("trials: 4", "trials: " + "9" * 400), "budget.trials", "budget:",
        ("at most 2**53",)),
    Bad("max_epochs_not_integer", edit("max_epochs: 2", "max_epochs: 2.5"), "budget.max_epochs",
        "budget:", ("expected an integer", "found 2.5")),
    Bad("negative_cpus", edit("cpus: 1", "cpus: -1"), "resources.cpus", "resources:", ("> 0", "-1")),
    Bad("fractional_gpus_above_one", edit("gpus: 0", "gpus: 1.5"), "resources.gpus", "resources:",
        ("a fraction below 1 or a whole number", "1.5")),
    Bad("zero_concurrency", edit("concurrency: 2", "concurrency: 0"), "resources.concurrency",
        "resources:", (">= 1", "found 0")),
    Bad("storage_without_scheme", BASE + "storage: runs/study.db\n", "storage", "storage:",
        ("sqlite:///", "'runs/study.db'")),
    Bad("storage_unknown_scheme", BASE + "storage: mongodb://localhost/study\n", "storage", "storage:",
        ("'mongodb'", "sqlite, postgresql")),
    Bad("negative_max_failures", BASE + "max_failures: -1\n", "max_failures", "max_failures:", (">= 0",)),
    # ---- up-front checks of the reliability issue: no run could use these
    Bad("name_too_long_for_a_file_name", edit("name: digits_small", "name: " + "n" * 300), "name", "name:",
        ("at most 100 characters", "300 characters")),
    Bad("storage_in_memory_sqlite", BASE + "storage: sqlite://\n", "storage", "storage:",
        ("an in-memory database", "the study would be lost")),
    Bad("storage_in_memory_sqlite_named", BASE + "storage: 'sqlite:///:memory:'\n", "storage", "storage:",
        ("an in-memory database",)),
    Bad("storage_driver_missing", BASE + "storage: mysql://user@db.example/study\n", "storage", "storage:",
        ("driver is not installed (MySQLdb)",)),
    # ---- several objectives and constraints (issue 25)
    Bad("objectives_and_metric", edit("metric: val_acc", "metric: val_acc\nobjectives: {val_acc: max, val_loss: min}"),
        "metric", "metric:", ("either `metric:`/`mode:` (one objective) or `objectives:`", "both")),
    Bad("objective_mode_unknown", edit("metric: val_acc", "objectives: {val_acc: max, val_loss: lower}"),
        "objectives.val_loss", "objectives:", ("one of max, min", "'lower'")),
    Bad("objective_typo", edit("metric: val_acc", "objectives: {val_acc: max, val_los: min}"),
        "objectives.val_los", "objectives:", ("did you mean `val_loss`?",)),
    Bad("objective_against_its_direction", edit("metric: val_acc", "objectives: {val_acc: max, val_loss: max}"),
        "objectives.val_loss", "objectives:", ("expected min (val_loss improves that way)",)),
    Bad("objectives_empty", edit("metric: val_acc", "objectives: {}"), "objectives", "objectives:",
        ("a mapping of logged names to max or min",)),
    Bad("constraint_without_bound", BASE + "constraints: {n_params: {below: 5}}\n", "constraints.n_params.below",
        "constraints:", ("one of the keys max, min", "unknown key 'below'")),
    Bad("constraint_bound_text", BASE + "constraints: {n_params: {max: lots}}\n", "constraints.n_params.max",
        "constraints:", ("a number", "'lots'")),
    Bad("constraint_min_above_max", BASE + "constraints:\n  val_loss: {min: 2, max: 1}\n", "constraints.val_loss",
        "val_loss:", ("`min <= max`",)),
    Bad("select_with_one_objective", BASE + "select: {val_acc: max}\n", "select", "select:",
        ("only with several `objectives:`",)),
    Bad("select_names_no_objective", edit("metric: val_acc", "objectives: {val_acc: max, val_loss: min}")
        + "select: {val_ac: max}\n", "select.val_ac", "select:", ("one of the objectives val_acc, val_loss",
                                                                    "did you mean `val_acc`?")),
    Bad("strategy_single_objective_only", edit("name: global, seed: 0", "name: local, seed: 0",
                                               edit("metric: val_acc", "objectives: {val_acc: max, val_loss: min}")),
        "strategy.name", "strategy:", ("global, heuristic, random, grid", "no single best")),
    Bad("median_with_two_objectives", edit("name: asha, options: {reduction_factor: 3}", "name: median",
                                           edit("metric: val_acc", "objectives: {val_acc: max, val_loss: min}")),
        "scheduler.name", "scheduler:", ("asha, hyperband, none", "MO-ASHA")),
]


def test_base_spec_is_valid(write_spec):
    """Every bad spec is BASE plus one mistake, so BASE itself must pass."""
    spec = parse_spec(write_spec(BASE))
    names = spec.space.names
    assert sorted(names) == ["conv_layers", "dropout", "learning_rate", "momentum", "optimizer"]
    assert names.index("optimizer") < names.index("momentum")  # a condition's parameter comes first
    assert spec.space.fixed == {"batch_size": 32}
    assert [(o.name, o.mode) for o in spec.objectives] == [("val_acc", "max")] and not spec.multi


def test_objectives_constraints_and_select_are_parsed_in_order(write_spec):
    text = edit("metric: val_acc", "objectives: {val_loss: min, val_acc: max, n_params: min}") + (
        "constraints: {n_params: {max: 100000}, val_loss: {min: 0.0, max: 3}}\n"
        "select: {val_acc: max, subject_to: {n_params: {max: 5.0e+4}}}\nscheduler: hyperband\n")
    text = text.replace("scheduler: {name: asha, options: {reduction_factor: 3}}\n", "")
    spec = parse_spec(write_spec(text))
    assert [(o.name, o.mode) for o in spec.objectives] == [("val_loss", "min"), ("val_acc", "max"),
                                                          ("n_params", "min")]
    assert (spec.metric, spec.mode) == ("val_loss", "min")  # the first objective picks each trial's best epoch
    assert spec.constraints == {"n_params": {"max": 100000.0}, "val_loss": {"min": 0.0, "max": 3.0}}
    assert spec.select.objective.name == "val_acc" and spec.select.subject_to == {"n_params": {"max": 50000.0}}
    assert spec.watched == ("val_loss", "val_acc", "n_params") and spec.several_objectives
    assert "the max val_acc on the Pareto front, n_params <= 50000" in spec.select.describe()


def test_table_has_distinct_cases():
    assert len(BAD_SPECS) >= 32
    assert len({case.id for case in BAD_SPECS}) == len(BAD_SPECS)


@pytest.mark.parametrize("case", BAD_SPECS, ids=lambda case: case.id)
def test_bad_spec_is_reported_where_it_is(case: Bad, write_spec):
    path = write_spec(case.text)
    with pytest.raises(SpecError) as caught:
        parse_spec(path)
    error = caught.value
    message = str(error)
    assert len(error.problems) == 1, message
    line = case.line()
    where = f"{path}:{line}" if line is not None else str(path)
    rendered = [text for text in message.splitlines() if text.startswith("  - ")]
    assert len(rendered) == 1, message
    assert rendered[0].startswith(f"  - {where}: {case.key}: expected "), message
    for fragment in case.says:
        assert fragment in rendered[0], message


def test_several_mistakes_are_all_reported_at_once(write_spec):
    text = edit("scheduler:", "schedular:")
    text = edit("learning_rate:", "learning_rat:", text)
    text = edit("low: 0.0, high: 0.5}", "low: 0.5, high: 0.1}", text)
    text = edit("trials: 4", "trials: 0", text)
    text = edit("gpus: 0", "gpus: 1.5", text)
    text = edit("metric: val_acc", "metric: val_acc\nmode: min", text)
    text += "storage: study.db\nmax_failures: 1\nmax_failures: 2\n"
    path = write_spec(text)
    with pytest.raises(SpecError) as caught:
        parse_spec(path)
    message = str(caught.value)
    keys = ["schedular", "space.learning_rat", "space.dropout", "budget.trials", "resources.gpus",
            "mode", "storage", "max_failures"]
    assert len(caught.value.problems) == len(keys), message
    assert message.splitlines()[0] == f"{path}: {len(keys)} problems in the sweep spec:"
    for key in keys:
        assert f": {key}: expected " in message, (key, message)


def test_python_tag_is_never_executed(write_spec, tmp_path):
    marker = tmp_path / "executed"
    path = write_spec(edit("name: digits_small", f'name: !!python/object/apply:os.system ["touch {marker}"]'))
    with pytest.raises(SpecError, match="never loaded"):
        parse_spec(path)
    assert not marker.exists()


# A timeout, not a wall-clock assert: an expanding bomb takes minutes (or all memory), a loaded
# machine only seconds longer.
@pytest.mark.timeout(30)
def test_alias_bomb_is_rejected_quickly(write_spec):
    path = write_spec(BILLION_LAUGHS)
    with pytest.raises(SpecError, match="YAML nodes"):
        parse_spec(path)


@pytest.mark.timeout(30)  # listing a billion values would take far longer
def test_large_int_range_condition_is_checked_without_listing_the_range(write_spec):
    text = edit("conv_layers: {type: int, low: 1, high: 3}", "channels: {type: int, low: 1, high: 1000000000}")
    path = write_spec(edit("when: {optimizer: sgd}", "when: {channels: 0}", text))
    with pytest.raises(SpecError, match=r"space\.momentum\.when\.channels: .*from 1 to 1000000000"):
        parse_spec(path)


def test_wrong_choice_does_not_cascade_into_its_conditions(write_spec):
    """momentum's condition names optimizer, whose own definition is wrong: one problem, not two."""
    path = write_spec(edit("[adam, sgd]", "[adam, rmsprop, sgd]"))
    with pytest.raises(SpecError) as caught:
        parse_spec(path)
    assert [p.path for p in caught.value.problems] == [("space", "optimizer", "choices", 1)]


@pytest.mark.parametrize("target", ["directory", "missing", "binary"])
def test_unreadable_spec_file(target, tmp_path):
    path = {"directory": tmp_path, "missing": tmp_path / "nope.yaml", "binary": tmp_path / "b.yaml"}[target]
    if target == "binary":
        path.write_bytes(b"name: \xff\xfe\x00")
    with pytest.raises(SpecError) as caught:
        parse_spec(path)
    expected = {"directory": "a regular YAML file", "missing": "a readable YAML file",
                "binary": "UTF-8 text"}[target]
    assert str(caught.value).splitlines()[1].startswith(f"  - {path}: (top level): expected {expected}")


def test_validation_does_not_rely_on_assert(write_spec):
    """`python -O` strips asserts; a bad spec must still be rejected under it."""
    path = write_spec(edit("trials: 4", "trials: 0"))
    code = ("import sys; from search.spec import parse_spec, SpecError\n"
            f"try:\n    parse_spec({str(path)!r})\nexcept SpecError:\n    sys.exit(3)\n")
    # A new interpreter importing torch and Lightning: 10 s on a quiet 2-core machine, and once
    # over 60 s (a timeout, not a verdict) while other sweeps loaded both cores to ~16.
    result = subprocess.run([sys.executable, "-O", "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 3, result.stderr


# --------------------------------------------------------------------------- the specs we ship


def test_spaces_folder_has_specs():
    assert SPEC_FILES, "no YAML under spaces/"


def stand_in_weights(path: Path, tmp_path: Path) -> dict:
    """A fine-tuning spec names the weights of an earlier sweep (its header says which), absent
    from a fresh clone, and the spec is refused up front without them. Weights of the same
    architecture, built here untrained, stand in: the override that puts them in place."""
    raw = yaml.safe_load(path.read_text())
    if "init_from" not in (raw.get("space") or {}):
        return {}
    import torch
    from finesweep.models.run import TrainingRun
    from finesweep.models.training import build
    from finesweep.search.spec.components import probe_values

    del raw["space"]["init_from"]
    copy = tmp_path / "without_weights.yaml"
    copy.write_text(f"{SPEC_DIR_RECORD}{path.parent}\n" + yaml.safe_dump(raw, sort_keys=False))
    spec = parse_spec(copy)
    config = spec.training_config({p.name: probe_values(p)[0] for p in spec.space.params})
    model, data = build(TrainingRun.from_config(config, max_epochs=1, seed=0, metric=spec.metric, mode=spec.mode))
    model.build_for(data.info)
    weights = tmp_path / "model.pt"
    torch.save(model.state_dict(), weights)
    return {("space", "init_from"): str(weights)}


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(p.relative_to(ROOT / "spaces")))
def test_shipped_spec_is_valid(path: Path, tmp_path):
    spec = parse_spec(path, stand_in_weights(path, tmp_path))
    assert spec.space.params, f"{path} searches nothing"
    assert spec.mode == spec.task.metrics[spec.metric]
    # A sweep copies spec.raw into its run directory and `export` parses that copy again.
    copy = tmp_path / "spec.yaml"
    copy.write_text(yaml.safe_dump(dict(spec.raw), sort_keys=False))
    again = parse_spec(copy)
    assert (again.space, again.strategy, again.scheduler, again.budget, again.resources) == (
        spec.space, spec.strategy, spec.scheduler, spec.budget, spec.resources)


# --------------------------------------------------------------------------- overrides

DIGITS = ROOT / "spaces" / "digits_cnn.yaml"


def test_override_replaces_the_file_value():
    from_file = parse_spec(DIGITS)
    spec = parse_spec(DIGITS, {("budget", "trials"): 3})
    assert from_file.budget.trials != 3
    assert spec.budget.trials == 3
    assert spec.budget.max_epochs == from_file.budget.max_epochs
    assert spec.raw["budget"]["trials"] == 3  # the run directory's copy records what ran


def test_override_creates_a_missing_section(write_spec):
    path = write_spec(edit("budget: {trials: 4, max_epochs: 2}\n", ""))
    assert parse_spec(path, {("budget", "max_epochs"): 7}).budget.max_epochs == 7


@pytest.mark.parametrize("name", ["global", "random"])
def test_seed_override_keeps_the_short_strategy_form(name, write_spec):
    path = write_spec(edit("strategy: {name: global, seed: 0}", f"strategy: {name}"))
    spec = parse_spec(path, {("strategy", "seed"): 7})
    assert (spec.strategy.name, spec.strategy.seed) == (name, 7)


def test_override_does_not_hide_a_malformed_section(write_spec):
    path = write_spec(edit("strategy: {name: global, seed: 0}", "strategy: [random]"))
    with pytest.raises(SpecError) as caught:
        parse_spec(path, {("strategy", "seed"): 7})
    assert [p.path for p in caught.value.problems] == [("strategy",)]
    assert f"{path}:{line_of(BASE, 'strategy:')}: strategy: expected a mapping" in str(caught.value)


def test_invalid_override_is_attributed_to_the_command_line():
    with pytest.raises(SpecError) as caught:
        parse_spec(DIGITS, {("budget", "trials"): 0})
    (problem,) = caught.value.problems
    assert problem.line is None
    assert problem.render(str(DIGITS)) == (
        f"{DIGITS}: budget.trials: expected an integer >= 1, found 0 "
        "(hint: this value came from the command line)")


# --------------------------------------------------------------------------- the command line


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    # A timeout, not a wall-clock assert: the refusal must come before any compute, which the
    # checks below see (no run directory, no Ray); how fast depends on the machine's load.
    return subprocess.run([sys.executable, "launch.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("case_id", ["low_above_high", "yaml_syntax_error", "python_object_tag"])
def test_cli_rejects_a_bad_spec_before_anything_runs(case_id, write_spec, tmp_path):
    case = next(c for c in BAD_SPECS if c.id == case_id)
    spec_path = write_spec(case.text)
    out = tmp_path / "run"
    result = run_cli("sweep", spec_path, "--out", out)
    assert result.returncode == 2, result.stderr
    assert f"{spec_path}:{case.line()}: {case.key}: expected " in result.stderr
    assert not out.exists()
    assert result.stdout == f"finesweep: checking {spec_path}\n"  # the only line before the check's verdict
    assert not re.search(r"\bRay\b", result.stdout + result.stderr)  # "finesweep: starting Ray" never printed


def test_cli_rejects_an_invalid_override(tmp_path):
    out = tmp_path / "run"
    result = run_cli("sweep", DIGITS, "--trials", "0", "--out", out)
    assert result.returncode == 2, result.stderr
    assert f"{DIGITS}: budget.trials: expected an integer >= 1, found 0" in result.stderr
    assert "command line" in result.stderr
    assert not out.exists()


CLI_LOOP = """
import contextlib, io, json, sys
from finesweep.search.cli import main
results = []
for spec, out in zip(sys.argv[1::2], sys.argv[2::2]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["sweep", spec, "--out", out])
    results.append({"code": code, "stderr": err.getvalue()})
print(json.dumps({"results": results, "ray_imported": "ray" in sys.modules}))
"""


def test_every_bad_spec_and_a_100_mb_file_are_refused_by_the_cli_before_any_compute(tmp_path):
    """The whole table through the command line (one process, so it stays fast), plus a
    100 MB file: exit code 2, a located message, no run directory, Ray never imported."""
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as handle:  # sparse: 100 MB without writing 100 MB
        handle.truncate(100 * 2**20)
    pairs = []
    for case in BAD_SPECS:
        spec = tmp_path / f"{case.id}.yaml"
        spec.write_text(case.text)
        pairs.append((spec, tmp_path / f"run_{case.id}"))
    pairs.append((huge, tmp_path / "run_huge"))
    argv = [str(p) for pair in pairs for p in pair]
    done = subprocess.run([sys.executable, "-c", CLI_LOOP, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not report["ray_imported"]
    for (spec, out), result in zip(pairs, report["results"], strict=True):
        assert result["code"] == 2, (spec.name, result)
        assert f"{spec}:" in result["stderr"] and "expected" in result["stderr"], (spec.name, result)
        assert not out.exists(), spec.name
    assert "at most 1048576 bytes" in report["results"][-1]["stderr"]


# ---- up-front refusals beyond the spec's text: exit 2, the file named, nothing created ----

def _fifo(tmp_path: Path) -> Path:
    import os

    path = tmp_path / "fifo.yaml"
    os.mkfifo(path)
    return path


def _corrupt_run(tmp_path: Path) -> Path:
    run = tmp_path / "corrupt_run"
    run.mkdir()
    (run / "spec.yaml").write_text(edit("name: digits_small", "name: corrupt"))
    (run / "study.db").write_bytes(b"this is not an SQLite database" * 100)
    return run


def _run_without_study(tmp_path: Path) -> Path:
    run = tmp_path / "no_study_run"
    run.mkdir()
    (run / "spec.yaml").write_text(edit("name: digits_small", "name: missing"))
    return run


def _foreign_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    return folder


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a folder")
    return path


# id -> (arguments built from tmp_path and the base spec's path, what the message names, says)
UPFRONT = {
    "out_is_a_file": (lambda t, spec: ["sweep", spec, "--out", _a_file(t)], "notes.txt", "is a file"),
    "out_is_a_foreign_non_empty_folder": (lambda t, spec: ["sweep", spec, "--out", _foreign_dir(t)], "photos",
                                          "holds no finesweep run"),
    "spec_is_a_fifo": (lambda t, spec: ["sweep", _fifo(t), "--out", t / "run"], "fifo.yaml", "found a FIFO"),
    "status_negative_top_k": (lambda t, spec: ["status", t / "run", "--top-k", "-2"], "--top-k", "got -2"),
    "report_zero_top_k": (lambda t, spec: ["report", t / "run", "--top-k", "0"], "--top-k", "got 0"),
    "export_missing_study": (lambda t, spec: ["export", _run_without_study(t)], "no_study_run",
                             "has no study.db"),
    "export_corrupt_study": (lambda t, spec: ["export", _corrupt_run(t)], "study.db", "not a database"),
    "resume_of_nothing": (lambda t, spec: ["sweep", spec, "--out", t / "run", "--resume"], "run",
                          "nothing to resume"),
}


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*")) if not p.is_fifo()}


@pytest.mark.parametrize("case_id", sorted(UPFRONT))
def test_up_front_refusals_name_the_file_and_create_nothing(case_id, tmp_path):
    spec = tmp_path / "base.yaml"
    spec.write_text(BASE)
    build, names, says = UPFRONT[case_id]
    args = build(tmp_path, spec)
    before = _tree(tmp_path)
    result = run_cli(*args)
    assert result.returncode == 2, (result.stdout + result.stderr)[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert names in result.stderr and says in result.stderr, result.stderr
    assert len(lines) <= 2, result.stderr
    assert "starting Ray" not in result.stdout
    assert _tree(tmp_path) == before


def test_start_from_reads_an_export_at_parse_time_and_the_sampler_gets_values(tmp_path):
    """`start_from: best.yaml` is read once, by the spec, relative to the spec's folder: the
    strategy receives the exported trial's parameter values, never a path."""
    from finesweep.search.strategies import make_sampler

    start = {"learning_rate": 0.01, "optimizer": "sgd", "momentum": 0.9, "conv_layers": 2, "dropout": 0.25}
    record = yaml.safe_dump({"trial": 3, "params": start}, sort_keys=False).splitlines()
    (tmp_path / "best.yaml").write_text("".join(f"#% {line}\n" for line in record) + "seed_everything: 1\n")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(edit("strategy: {name: global, seed: 0}",
                              "strategy: {name: local, seed: 0, options: {start_from: best.yaml}}"))
    spec = parse_spec(spec_path)
    assert spec.strategy.options["start_from"] == start
    study = optuna.create_study(sampler=make_sampler("local", spec.space, spec.strategy.options, 0))
    assert spec.space.sample(study.ask()) == start

    (tmp_path / "best.yaml").unlink()
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_path)
    (problem,) = caught.value.problems
    assert problem.path == ("strategy", "options", "start_from") and "a readable best.yaml" in problem.expected
