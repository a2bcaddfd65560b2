"""A class as a search dimension: ``model.encoder.class_path`` searched like any choice, each
class's own arguments made conditional on it with ``when:``, an argument both classes take
(``width``) searched once; each value checked against the class it goes to. Every strategy
samples such a space into configs LightningCLI takes; mistakes are refused one located problem
at a time (the classes are tests/parity_models.py)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import optuna
import pytest
import yaml
from finesweep.models import components
from finesweep.search.spec import SpecError, parse_spec
from finesweep.search.strategies import STRATEGIES, make_sampler
from test_lightning_parity import lightning_cli_accepts

M = "parity_models"
CONV, MLP, SIZED = f"{M}.ConvEncoder", f"{M}.MLPEncoder", f"{M}.SizedEncoder"
WHEN_CONV = f"when: {{model.encoder.class_path: {CONV}}}"
WHEN_MLP = f"when: {{model.encoder.class_path: {MLP}}}"
CHOICE = f"model.encoder.class_path: {{type: categorical, choices: [{CONV}, {MLP}]}}"
WIDTH = "model.encoder.init_args.width: {type: int, low: 8, high: 16, step: 8}"
DEPTH = f"model.encoder.init_args.depth: {{type: int, low: 1, high: 2, {WHEN_CONV}}}"
DROPOUT = f"model.encoder.init_args.dropout: {{type: categorical, choices: [0.0, 0.25], {WHEN_MLP}}}"
BASE = f"""\
name: choice
model:
  class_path: {M}.ParityNet
  init_args: {{optimizer: adam}}
data:
  class_path: {M}.ParityData
metric: val_loss
mode: min
space:
  {CHOICE}
  {WIDTH}
  {DEPTH}
  {DROPOUT}
  model.lr: {{type: float, low: 1.0e-3, high: 1.0e-1, log: true}}
strategy: {{name: global, seed: 0}}
budget: {{trials: 12, max_epochs: 1}}
"""
# grid needs a finite space: lr takes a step there.
OPTIONS = {"local": "{n_startup_trials: 4}", "auto": "{switch_after: 4}"}


def edit(old: str, new: str, text: str = BASE) -> str:
    if text.count(old) != 1:
        raise ValueError(f"{old!r} occurs {text.count(old)} times, not once")
    return text.replace(old, new)


def spec_for(strategy: str, tmp_path) -> object:
    text = edit("strategy: {name: global, seed: 0}",
                f"strategy: {{name: {strategy}, seed: 0, options: {OPTIONS.get(strategy, '{}')}}}")
    if strategy == "grid":
        text = edit("low: 1.0e-3, high: 1.0e-1, log: true", "low: 0.01, high: 0.02, step: 0.01", text)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return parse_spec(path)


def test_the_base_spec_reads_as_a_class_choice(tmp_path):
    spec = spec_for("global", tmp_path)
    assert spec.targets["model.encoder.class_path"] == ("model", "encoder", "class_path")
    assert spec.targets["model.encoder.init_args.depth"] == ("model", "encoder", "init_args", "depth")
    names = spec.space.names
    assert names.index("model.encoder.class_path") < names.index("model.encoder.init_args.depth")
    config = spec.training_config({"model.encoder.class_path": MLP, "model.encoder.init_args.width": 16,
                                   "model.encoder.init_args.dropout": 0.25, "model.lr": 0.01})
    assert config["model"]["init_args"] == {"optimizer": "adam", "lr": 0.01, "encoder": {
        "class_path": MLP, "init_args": {"width": 16, "dropout": 0.25}}}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_samples_configs_of_either_class_with_only_its_arguments(strategy, tmp_path):
    spec = spec_for(strategy, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = make_sampler(strategy, spec.space, spec.strategy.options, seed=0)
        study = optuna.create_study(sampler=sampler, direction="minimize")
        chosen = set()
        for _ in range(12):
            trial = study.ask()
            sampled = spec.space.sample(trial)
            config = spec.training_config(sampled)
            assert json.loads(json.dumps(config)) == config  # plain data, as a trial is sent it
            encoder = config["model"]["init_args"]["encoder"]
            cls = components.import_class(encoder["class_path"])
            assert set(encoder["init_args"]) <= set(components.class_arguments(cls)), encoder
            assert ("depth" in encoder["init_args"]) == (cls.__name__ == "ConvEncoder"), encoder
            assert ("dropout" in encoder["init_args"]) == (cls.__name__ == "MLPEncoder"), encoder
            model = components.instantiate(config["model"]["class_path"], config["model"]["init_args"])
            assert type(model.encoder) is cls and model.encoder.width == encoder["init_args"]["width"]
            chosen.add(cls.__name__)
            # A score that depends on the class, so model-based strategies have something to learn.
            study.tell(trial, encoder["init_args"]["width"] / 16 + (cls.__name__ == "MLPEncoder"))
    assert chosen == {"ConvEncoder", "MLPEncoder"}, strategy


def test_an_export_with_a_chosen_class_is_a_lightning_cli_config_and_trains_here(tmp_path):
    from finesweep.models.training import build
    from finesweep.search.views.export import lightning_config, read_export

    spec = spec_for("global", tmp_path)
    config = spec.training_config({"model.encoder.class_path": CONV, "model.encoder.init_args.width": 8,
                                   "model.encoder.init_args.depth": 2, "model.lr": 0.01})
    exported = lightning_config(config, seed=3, max_epochs=1)
    accepted, said = lightning_cli_accepts({k: v for k, v in exported.items() if k != "seed_everything"})
    assert accepted, said
    best = tmp_path / "best.yaml"
    best.write_text("#% metric: val_loss\n#% mode: min\n" + yaml.safe_dump(exported, sort_keys=False))
    run = read_export(best).run
    model, _ = build(run)
    assert type(model.encoder).__name__ == "ConvEncoder" and model.encoder.depth == 2


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    key: str
    says: tuple[str, ...]


# SizedEncoder (a required width) in MLPEncoder's place, with a scale of its own.
SIZED_BASE = edit(f"[{CONV}, {MLP}]", f"[{CONV}, {SIZED}]", BASE.replace(WHEN_MLP, WHEN_MLP.replace(MLP, SIZED))
                  .replace("init_args.dropout", "init_args.scale").replace("[0.0, 0.25]", "[1.0, 2.0]"))
STACK = (f"init_args:\n    encoder:\n      class_path: {M}.StackEncoder\n"
         f"      init_args: {{block: {{class_path: {CONV}}}}}")
FIXED = f"init_args:\n    encoder: {{class_path: {CONV}, init_args: "  # + {...}}}
KERNAL = "space:\n  model.encoder.init_args.block.init_args.kernal: {type: categorical, choices: [3, 5]}\n"
BAD = [
    Bad("nested_key_typo", edit("init_args.width:", "init_args.widht:"), "space.model.encoder.init_args.widht",
        ("unknown parameter 'widht'", "did you mean `width`?")),
    Bad("argument_of_one_class_without_when", edit(f", {WHEN_CONV}", ""), "space.model.encoder.init_args.depth",
        ("an argument of MLPEncoder", f"add `when: {{model.encoder.class_path: {CONV}}}`")),
    Bad("choice_not_a_subclass", edit(f"[{CONV}, {MLP}]", f"[{CONV}, {M}.ParityData]"),
        "space.model.encoder.class_path.choices[1]", ("a subclass of Module", "ParityData")),
    Bad("choice_not_importable", edit(f"[{CONV}, {MLP}]", f"[{CONV}, {M}.MLPEncodr]"),
        "space.model.encoder.class_path.choices[1]", ("has no class 'MLPEncodr'",)),
    Bad("choice_not_a_class_path", edit(f"[{CONV}, {MLP}]", f"[{CONV}, 3]"),
        "space.model.encoder.class_path.choices[1]", ("a class path", "3")),
    Bad("class_path_searched_as_a_number", edit(CHOICE, "model.encoder.class_path: {type: int, low: 1, high: 2}"),
        "space.model.encoder.class_path.type", ("categorical",)),
    Bad("float_range_for_an_int_of_both", edit("width: {type: int,", "width: {type: float,"),
        "space.model.encoder.init_args.width.type", ("int (this setting takes whole numbers)",)),
    Bad("choice_outside_a_nested_literal",
        edit("  model.lr:", f"  model.encoder.init_args.kernel: {{type: categorical, choices: [3, 4], {WHEN_CONV}}}"
                            "\n  model.lr:"),
        "space.model.encoder.init_args.kernel.choices[1]", ("one of 3, 5", "4")),
    Bad("fixed_argument_one_class_lacks",
        edit("init_args: {optimizer: adam}", f"{FIXED}{{depth: 2}}}}"),
        "model.init_args.encoder.init_args.depth", ("which parity_models.MLPEncoder does not take", "when:")),
    Bad("fixed_nested_typo_under_a_choice",
        edit("init_args: {optimizer: adam}", f"{FIXED}{{widht: 8}}}}"),
        "model.init_args.encoder.init_args.widht", ("did you mean `width`?",)),
    Bad("required_argument_of_a_choice_left_to_nobody", edit(f"  {WIDTH}\n", "", SIZED_BASE),
        "model.init_args.encoder.init_args.width",
        ("SizedEncoder's required argument 'width'", f"class_path: {SIZED}")),
    Bad("nested_key_without_a_class", edit(f"  {CHOICE}\n", "", BASE.replace(f", {WHEN_CONV}", "")
                                           .replace(f"  {DROPOUT}\n", "")),
        "space.model.encoder.init_args.width", ("a class for model.encoder",)),
    Bad("condition_on_a_class_not_among_the_choices", edit(WHEN_CONV, WHEN_CONV.replace(CONV, SIZED)),
        "space.model.encoder.init_args.depth.when.model.encoder.class_path",
        ("a value model.encoder.class_path can take",)),
    Bad("two_deep_under_a_fixed_stack",
        edit("init_args: {optimizer: adam}", STACK, BASE.split("space:")[0] + KERNAL + "budget: {trials: 2}\n"),
        "space.model.encoder.init_args.block.init_args.kernal",
        ("an argument of ConvEncoder", "did you mean `kernel`?")),
]


def test_the_bad_cases_are_distinct():
    assert len({b.id for b in BAD}) == len({b.text for b in BAD}) == len(BAD)


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_a_mistake_in_a_class_choice_is_one_located_problem(case: Bad, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(case.text)
    with pytest.raises(SpecError) as caught:
        parse_spec(path)
    message = str(caught.value)
    assert len(caught.value.problems) == 1, message
    problem = caught.value.problems[0]
    assert problem.line is not None, message
    assert problem.render(str(path)).startswith(f"{path}:{problem.line}: {case.key}: expected "), message
    for fragment in case.says:
        assert fragment in message, message


def test_a_required_argument_of_a_choice_is_given_by_searching_it(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SIZED_BASE)
    spec = parse_spec(path)  # SizedEncoder's required width is searched for every choice
    config = spec.training_config({"model.encoder.class_path": SIZED, "model.encoder.init_args.width": 8,
                                   "model.encoder.init_args.scale": 2.0})
    assert components.instantiate(config["model"]["class_path"], config["model"]["init_args"]).encoder.width == 8


@pytest.mark.slow
def test_the_encoders_example_sweeps_its_class_choice_exports_and_retrains_it(tmp_path):
    """examples/encoders end to end through launch.py: trials of either encoder, best.yaml
    naming the chosen one, `train` reproducing its value. Its LearningRateMonitor needs the
    logger that finesweep's runtime gives user callbacks (the other half of issue 22), so this
    copy sweeps without it: the class choice is what is tested here."""
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from finesweep.search.study import load_study

    root = Path(__file__).resolve().parents[1]
    example = root / "examples" / "encoders"
    project = tmp_path / "project"
    project.mkdir()
    for name in ("encoders_model.py", "all_digits.txt"):
        shutil.copy(example / name, project / name)
    text = (example / "sweep.yaml").read_text()
    monitor = ("    - class_path: pytorch_lightning.callbacks.LearningRateMonitor\n"
               "      init_args: {logging_interval: epoch}\n")
    assert monitor in text
    (project / "sweep.yaml").write_text(text.replace(monitor, "").replace("{name: global, seed: 0}",
                                                                          "{name: random, seed: 1}"))
    run = tmp_path / "run"

    def cli(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(root / "launch.py"), *map(str, args)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=900)

    swept = cli("sweep", project / "sweep.yaml", "--trials", "4", "--max-epochs", "2", "--out", run)
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
    assert "FAIL 0" in swept.stdout
    study = load_study("digits_encoders", f"sqlite:///{run / 'study.db'}")
    for trial in study.trials:
        encoder = trial.user_attrs["config"]["model"]["init_args"]["encoder"]
        assert encoder["class_path"] == trial.params["model.encoder.class_path"]
        assert ("depth" in encoder["init_args"]) == encoder["class_path"].endswith("ConvEncoder")
        assert ("dropout" in encoder["init_args"]) == encoder["class_path"].endswith("MLPEncoder")
    best = yaml.safe_load((run / "best.yaml").read_text())
    ranked = max(study.trials, key=lambda t: t.value if t.value is not None else -1)
    assert best["model"]["init_args"]["encoder"]["class_path"] == ranked.params["model.encoder.class_path"]
    trained = cli("train", run / "best.yaml")
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    again = float(re.search(r"val/acc (\d\.\d+) \(sweep: (\d\.\d+)\)", trained.stdout).group(1))
    assert again == pytest.approx(ranked.value, abs=5e-5), trained.stdout
