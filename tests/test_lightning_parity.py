"""LightningCLI's parser is the judge: each config of the table is given to a real
``LightningCLI(run=False)`` (subclass mode, as a LightningCLI config names its classes) and,
embedded in a sweep spec, to finesweep's check; both must give the table's verdict. A config
refused must be refused with one problem at its key path, on the line that holds that key.

The classes are tests/parity_models.py: a module whose ``encoder`` is a nested class (two and
three deep through ``StackEncoder``), a Literal, Optional, unions, dicts, lists of classes,
a jsonargparse existing-file path; Trainer callbacks are Lightning's own.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import yaml
from finesweep.models import components
from finesweep.search.spec import SpecError, parse_spec

HERE = Path(__file__).resolve().parent
EXISTING = str(HERE / "parity_models.py")
MISSING = str(HERE / "no_such_weights.pt")

M = "parity_models"
DATA = f"data:\n  class_path: {M}.ParityData\n"


def model(init_args: str, cls: str = "ParityNet") -> str:
    """A ``model:`` section; ``init_args`` is YAML indented under it."""
    return f"model:\n  class_path: {M}.{cls}\n  init_args:\n" + "".join(
        f"    {line}\n" for line in init_args.splitlines())


CONV = f"encoder: {{class_path: {M}.ConvEncoder}}"


@dataclass(frozen=True)
class Case:
    id: str
    config: str  # the model, data and trainer sections, as YAML
    accepted: bool
    key: str = ""  # where a refused config's one problem is
    says: tuple[str, ...] = ()  # text that problem must contain
    # The key on the line the problem names: the last of `key`, or the nearest one written
    # when that key is missing from the config.
    line_has: str = ""
    # A class named by its name alone, and the import path a trial's config names it by.
    expands: tuple[tuple[str, str], ...] = ()


CASES = [
    # ---- accepted by LightningCLI: nested classes at any depth, every way of naming a class
    Case("nested_class", model(f"encoder:\n  class_path: {M}.ConvEncoder\n  init_args: {{width: 4}}") + DATA, True),
    Case("nested_class_as_a_path_string", model(f"encoder: {M}.MLPEncoder") + DATA, True),
    # By its name alone, as jsonargparse finds a subclass among those imported: one no other module
    # of the tests defines (examples/encoders has an MLPEncoder too, which makes that name ambiguous).
    Case("nested_class_by_short_name", model(f"encoder: {{class_path: StackEncoder, init_args: {{block: "
                                             f"{{class_path: {M}.MLPEncoder}}}}}}") + DATA, True,
         expands=(("StackEncoder", f"{M}.StackEncoder"),)),
    Case("nested_without_init_args", model(CONV) + DATA, True),
    Case("depth_2", model(f"encoder:\n  class_path: {M}.StackEncoder\n  init_args:\n    block:\n"
                          f"      class_path: {M}.ConvEncoder\n      init_args: {{width: 4, kernel: 5}}") + DATA, True),
    Case("depth_3", model(f"encoder:\n  class_path: {M}.StackEncoder\n  init_args:\n    block:\n"
                          f"      class_path: {M}.StackEncoder\n      init_args:\n        repeats: 3\n"
                          f"        block: {{class_path: {M}.MLPEncoder, init_args: {{width: 8}}}}") + DATA, True),
    Case("nested_required_given", model(f"encoder: {{class_path: {M}.SizedEncoder, init_args: {{width: 3}}}}")
         + DATA, True),
    Case("literal", model(f"{CONV}\noptimizer: sgd") + DATA, True),
    Case("nested_literal", model(f"encoder: {{class_path: {M}.MLPEncoder, init_args: {{activation: tanh}}}}")
         + DATA, True),
    Case("optional_class_null", model(f"{CONV}\nhead: null") + DATA, True),
    Case("optional_class_given", model(f"{CONV}\nhead: {{class_path: {M}.MLPEncoder, init_args: {{width: 2}}}}")
         + DATA, True),
    Case("union_int_or_list", model(f"{CONV}\nhidden: [8, 16]") + DATA, True),
    Case("dict_argument", model(f"{CONV}\noptions: {{alpha: 0.5, beta: 2}}") + DATA, True),
    Case("list_of_strings", model(f"{CONV}\ntags: [a, b]") + DATA, True),
    Case("existing_path", model(f"{CONV}\nweights: {EXISTING}") + DATA, True),
    Case("int_for_a_float", model(f"{CONV}\nmomentum: 1") + DATA, True),
    Case("required_plain_given", model("n_classes: 3", "NeedsClasses") + DATA, True),
    Case("optional_plain_null", model("n_classes: 3\nscale: null", "NeedsClasses") + DATA, True),
    Case("data_list_of_classes", model(CONV) + DATA + "  init_args:\n    transforms:\n"
         "      - class_path: torch.nn.Identity\n      - {class_path: torch.nn.Dropout, init_args: {p: 0.2}}\n", True),
    Case("data_tuple", model(CONV) + DATA + "  init_args: {split: [0.7, 0.3], mode: full}\n", True),
    Case("trainer_callbacks", model(CONV) + DATA + "trainer:\n  callbacks:\n"
         "    - class_path: pytorch_lightning.callbacks.LearningRateMonitor\n"
         "    - class_path: pytorch_lightning.callbacks.EarlyStopping\n"
         "      init_args: {monitor: val_loss, patience: 2}\n", True),
    Case("trainer_callbacks_short_names", model(CONV) + DATA + "trainer:\n  callbacks:\n"
         "    - class_path: LearningRateMonitor\n      init_args: {logging_interval: epoch}\n"
         "    - {class_path: EarlyStopping, init_args: {monitor: val_loss}}\n", True,
         expands=(("LearningRateMonitor", "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor"),
                  ("EarlyStopping", "pytorch_lightning.callbacks.early_stopping.EarlyStopping"))),
    Case("trainer_one_callback", model(CONV) + DATA + "trainer:\n  callbacks:\n"
         "    class_path: pytorch_lightning.callbacks.EarlyStopping\n    init_args: {monitor: val_loss}\n", True),
    Case("trainer_options", model(CONV) + DATA + "trainer:\n  gradient_clip_val: 0.5\n  accumulate_grad_batches: 2\n"
         "  limit_train_batches: 0.5\n  precision: 32\n", True),
    # ---- what jsonargparse makes of YAML's plain values: taken as LightningCLI takes them
    Case("number_as_a_string", model(f"{CONV}\nmomentum: '1e-3'") + DATA, True),
    Case("unsigned_exponent_read_as_a_string", model(f"{CONV}\nmomentum: 1e-3") + DATA, True),
    Case("int_as_a_string", model(f"encoder: {{class_path: {M}.ConvEncoder, init_args: {{width: '4'}}}}") + DATA, True),
    Case("yes_for_a_bool", model(f"encoder: {{class_path: {M}.MLPEncoder, init_args: {{bias: 'yes'}}}}") + DATA, True),
    Case("null_for_a_float_with_a_default", model(f"{CONV}\nmomentum: null") + DATA, True),
    Case("literal_int_as_a_string", model(f"encoder: {{class_path: {M}.ConvEncoder, init_args: {{kernel: '3'}}}}")
         + DATA, True),
    Case("list_of_int_strings", model(f"{CONV}\nhidden: ['8']") + DATA, True),
    Case("data_as_a_class_path", model(CONV) + f"data: {M}.ParityData\n", True),
    Case("no_callbacks", model(CONV) + DATA + "trainer:\n  callbacks: []\n", True),
    Case("trainer_option_null", model(CONV) + DATA + "trainer:\n  gradient_clip_val: null\n", True),
    Case("float_2_0_for_an_int", model(f"encoder: {{class_path: {M}.ConvEncoder, init_args: {{width: 2.0}}}}")
         + DATA, False, "model.init_args.encoder.init_args.width", ("expected an integer", "2.0")),
    Case("bool_for_an_int", model(f"encoder: {{class_path: {M}.ConvEncoder, init_args: {{width: true}}}}") + DATA,
         False, "model.init_args.encoder.init_args.width", ("True (a boolean)",)),
    Case("string_for_a_list", model(f"{CONV}\ntags: abc") + DATA, False, "model.init_args.tags", ("'abc'",)),
    # ---- refused by LightningCLI: unknown keys at each depth
    Case("unknown_key_depth_1", model(f"{CONV}\nmomentun: 0.5") + DATA, False,
         "model.init_args.momentun", ("did you mean `momentum`?",)),
    Case("unknown_key_depth_2", model(f"encoder:\n  class_path: {M}.ConvEncoder\n  init_args: {{widht: 4}}") + DATA,
         False, "model.init_args.encoder.init_args.widht", ("did you mean `width`?",)),
    Case("unknown_key_depth_3", model(f"encoder:\n  class_path: {M}.StackEncoder\n  init_args:\n    block:\n"
                                      f"      class_path: {M}.ConvEncoder\n      init_args: {{kernal: 5}}") + DATA,
         False, "model.init_args.encoder.init_args.block.init_args.kernal", ("did you mean `kernel`?",)),
    Case("unknown_key_in_a_callback", model(CONV) + DATA + "trainer:\n  callbacks:\n"
         "    - class_path: pytorch_lightning.callbacks.LearningRateMonitor\n"
         "    - class_path: pytorch_lightning.callbacks.EarlyStopping\n"
         "      init_args: {monitor: val_loss, patiense: 2}\n", False,
         "trainer.callbacks[1].init_args.patiense", ("did you mean `patience`?",)),
    Case("unknown_trainer_option", model(CONV) + DATA + "trainer:\n  gradient_clip_vall: 0.5\n", False,
         "trainer.gradient_clip_vall", ("did you mean `gradient_clip_val`?",)),
    Case("unknown_data_argument", model(CONV) + DATA + "  init_args: {batch_sise: 8}\n", False,
         "data.init_args.batch_sise", ("did you mean `batch_size`?",)),
    Case("init_args_shorthand", model(f"encoder: {{class_path: {M}.MLPEncoder, width: 3}}") + DATA, False,
         "model.init_args.encoder.width", ("under init_args",)),
    # ---- wrong types and values at each depth
    Case("wrong_type_depth_1", model(f"{CONV}\nmomentum: fast") + DATA, False,
         "model.init_args.momentum", ("'fast' (a string)",)),
    Case("wrong_type_depth_2", model(f"encoder: {{class_path: {M}.ConvEncoder, init_args: {{width: wide}}}}") + DATA,
         False, "model.init_args.encoder.init_args.width", ("'wide' (a string)",)),
    Case("float_for_an_int", model(f"encoder: {{class_path: {M}.ConvEncoder, init_args: {{width: 2.5}}}}") + DATA,
         False, "model.init_args.encoder.init_args.width", ("2.5",)),
    Case("literal_violated", model(f"{CONV}\noptimizer: rmsprop") + DATA, False,
         "model.init_args.optimizer", ("'rmsprop'",)),
    Case("nested_literal_violated", model(f"encoder: {{class_path: {M}.ConvEncoder, init_args: {{kernel: 4}}}}")
         + DATA, False, "model.init_args.encoder.init_args.kernel", ("4",)),
    Case("nested_bool_violated", model(f"encoder: {{class_path: {M}.MLPEncoder, init_args: {{bias: maybe}}}}")
         + DATA, False, "model.init_args.encoder.init_args.bias", ("'maybe'",)),
    Case("union_violated", model(f"{CONV}\nhidden: wide") + DATA, False, "model.init_args.hidden", ("'wide'",)),
    Case("dict_value_violated", model(f"{CONV}\noptions: {{alpha: high}}") + DATA, False,
         "model.init_args.options", ("high",)),
    Case("tuple_length_violated", model(CONV) + DATA + "  init_args: {split: [0.5, 0.3, 0.2]}\n", False,
         "data.init_args.split", ("[0.5, 0.3, 0.2]",)),
    Case("data_literal_violated", model(CONV) + DATA + "  init_args: {mode: partial}\n", False,
         "data.init_args.mode", ("'partial'",)),
    Case("trainer_option_wrong_type", model(CONV) + DATA + "trainer:\n  gradient_clip_val: lots\n", False,
         "trainer.gradient_clip_val", ("'lots'",)),
    Case("missing_existing_path", model(f"{CONV}\nweights: {MISSING}") + DATA, False,
         "model.init_args.weights", ("no_such_weights.pt",)),
    # ---- required arguments missing or null, at each depth
    Case("required_missing", model("optimizer: sgd") + DATA, False,
         "model.init_args.encoder", ("required argument 'encoder'",), "init_args:"),
    Case("required_null", model("encoder: null  # REQUIRED") + DATA, False,
         "model.init_args.encoder", ("required argument 'encoder'", "nothing (null)")),
    Case("required_plain_null", model("n_classes: null", "NeedsClasses") + DATA, False,
         "model.init_args.n_classes", ("required argument 'n_classes'",)),
    Case("nested_required_missing", model(f"encoder: {{class_path: {M}.SizedEncoder, init_args: {{scale: 2.0}}}}")
         + DATA, False, "model.init_args.encoder.init_args.width", ("required argument 'width'",), "scale: 2.0"),
    Case("nested_required_null", model(f"encoder: {{class_path: {M}.SizedEncoder, init_args: {{width: null}}}}")
         + DATA, False, "model.init_args.encoder.init_args.width", ("required argument 'width'",)),
    Case("class_by_path_without_its_required_argument", model(f"encoder: {M}.SizedEncoder") + DATA, False,
         "model.init_args.encoder", ("required argument 'width'",)),
    Case("model_by_path_without_its_required_argument", f"model: {M}.NeedsClasses\n" + DATA, False,
         "model.init_args.n_classes", ("required argument 'n_classes'",), "model:"),
    # ---- classes that are not what the argument takes, or not named at all
    Case("class_not_a_subclass", model(f"encoder: {{class_path: {M}.ParityData}}") + DATA, False,
         "model.init_args.encoder.class_path", ("Module", "ParityData")),
    Case("class_not_importable", model("encoder: {class_path: nowhere.Encoder}") + DATA, False,
         "model.init_args.encoder.class_path", ("nowhere",)),
    Case("nested_class_in_the_wrong_place", model(f"{CONV}\nhead: {{class_path: {M}.NotAModule}}") + DATA, False,
         "model.init_args.head.class_path", ("NotAModule",)),
    Case("callback_not_a_callback", model(CONV) + DATA + "trainer:\n  callbacks:\n    - class_path: torch.nn.ReLU\n",
         False, "trainer.callbacks[0].class_path", ("Callback",)),
    Case("init_args_not_a_mapping", model(f"encoder: {{class_path: {M}.ConvEncoder, init_args: [4]}}") + DATA, False,
         "model.init_args.encoder.init_args", ("a mapping",)),
    Case("nested_class_without_class_path", model("encoder: {init_args: {width: 3}}") + DATA, False,
         "model.init_args.encoder.class_path", ("a class_path naming a subclass of Module",), "encoder"),
    Case("callback_without_class_path", model(CONV) + DATA + "trainer:\n  callbacks:\n    - init_args: {monitor: x}\n",
         False, "trainer.callbacks[0].class_path", ("a class_path naming a subclass of Callback",), "init_args"),
    Case("model_arguments_beside_class_path", f"model:\n  class_path: {M}.NeedsClasses\n  n_classes: 3\n" + DATA,
         False, "model.n_classes", ("write it under init_args",)),
    Case("dict_kwargs_for_a_class_without_kwargs",
         model(f"encoder: {{class_path: {M}.ConvEncoder, dict_kwargs: {{widht: 1}}}}") + DATA, False,
         "model.init_args.encoder.dict_kwargs.widht", ("takes no **kwargs", "did you mean `width`?")),
    Case("model_not_a_lightning_module", model("width: 3", "ConvEncoder") + DATA, False,
         "model.class_path", ("LightningModule",)),
    Case("data_not_a_datamodule", model(CONV) + f"data:\n  class_path: {M}.ConvEncoder\n", False,
         "data.class_path", ("LightningDataModule",)),
]


def lightning_cli_accepts(config: dict) -> tuple[bool, str]:
    """Whether ``LightningCLI(run=False)`` parses ``config`` and instantiates its classes,
    and what it said when not. Subclass mode: ``model``/``data`` name their classes."""
    import pytorch_lightning as pl
    from pytorch_lightning.cli import LightningCLI

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said), \
                mock.patch.object(sys, "argv", ["parity"]):  # LightningCLI warns of the test runner's argv
            LightningCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True,
                         subclass_mode_data=True, run=False, args=config, save_config_callback=None,
                         trainer_defaults={"logger": False, "enable_checkpointing": False,
                                           "enable_progress_bar": False, "enable_model_summary": False})
    except SystemExit:  # the parser's error: it prints the reason and exits 2
        return False, said.getvalue()
    except Exception as error:  # instantiating a class raised
        return False, f"{type(error).__name__}: {error}"
    return True, ""


def spec_text(config: str) -> str:
    return ("name: parity\n" + config + "metric: val_loss\nmode: min\n"
            "space:\n  model.lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"
            "budget: {trials: 2, max_epochs: 1}\n")


def class_paths(tree: object) -> list[str]:
    if isinstance(tree, dict):
        own = [tree["class_path"]] if isinstance(tree.get("class_path"), str) else []
        return own + [p for v in tree.values() for p in class_paths(v)]
    return [p for v in tree for p in class_paths(v)] if isinstance(tree, list) else []


def config_of(case: Case) -> dict:
    return yaml.safe_load(case.config)


@pytest.fixture(scope="module", autouse=True)
def quiet_lightning():
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def test_the_table_is_large_and_varied():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.accepted for c in CASES) >= 12 and sum(not c.accepted for c in CASES) >= 12


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_lightning_cli_and_finesweep_agree(case: Case, tmp_path):
    accepted, said = lightning_cli_accepts(config_of(case))
    assert accepted == case.accepted, f"LightningCLI {'accepted' if accepted else 'refused'} it: {said[-1500:]}"
    path = tmp_path / "spec.yaml"
    text = spec_text(case.config)
    path.write_text(text)
    if case.accepted:
        spec = parse_spec(path)
        config = spec.training_config({"model.lr": 0.01})
        # What a trial is sent is plain data (JSON), and the config LightningCLI took.
        assert json.loads(json.dumps(config)) == config
        given = config_of(case)
        for short, full in case.expands:
            given = yaml.safe_load(yaml.safe_dump(given).replace(f"class_path: {short}\n", f"class_path: {full}\n"))
        for section in ("model", "data"):
            if isinstance(given[section], str):
                given[section] = {"class_path": given[section]}
            given[section].setdefault("init_args", {})
        given["model"]["init_args"]["lr"] = 0.01
        assert {k: config[k] for k in given} == given
        for class_path in class_paths(config):  # what a trial imports, a plain import finds
            components.import_class(class_path)
        return
    with pytest.raises(SpecError) as caught:
        parse_spec(path)
    message = str(caught.value)
    assert len(caught.value.problems) == 1, message
    problem = caught.value.problems[0]
    rendered = problem.render(str(path))
    assert f": {case.key}: expected " in rendered, message
    last = case.line_has or case.key.rsplit(".", 1)[-1].split("[")[0]
    assert problem.line is not None and last in text.splitlines()[problem.line - 1], message
    for fragment in case.says:
        assert fragment in rendered, message


# Where finesweep refuses on purpose what LightningCLI's parser takes: each would fail every
# trial the same way, or is set by finesweep itself.
STRICTER = [
    Case("input_file_missing", model(f"{CONV}\ninit_from: {MISSING}") + DATA, False, "model.init_args.init_from",
         ("an existing file", "no_such_weights.pt")),
    Case("nested_input_file_missing", model(CONV) + DATA + "  init_args: {data_file: missing.csv}\n", False,
         "data.init_args.data_file", ("an existing file", "missing.csv")),
    Case("option_finesweep_sets", model(CONV) + DATA + "trainer:\n  max_epochs: 3\n", False, "trainer.max_epochs",
         ("budget.max_epochs",)),
]


@pytest.mark.parametrize("case", STRICTER, ids=lambda c: c.id)
def test_where_finesweep_is_stricter_than_lightning_cli_on_purpose(case: Case, tmp_path):
    accepted, said = lightning_cli_accepts(config_of(case))
    assert accepted, said
    path = tmp_path / "spec.yaml"
    path.write_text(spec_text(case.config))
    with pytest.raises(SpecError) as caught:
        parse_spec(path)
    (problem,) = caught.value.problems
    assert f": {case.key}: expected " in problem.render(str(path))
    for fragment in case.says:
        assert fragment in problem.render(str(path))
