"""`launch.py init` on models with nested class arguments: a required encoder gets the classes
found beside the model (one fixed, several searched, each one's own arguments conditional on
it) with ranges for their numeric arguments; an argument only some optimizers read is searched
only for them; a required argument it cannot fill is left for the check to refuse by name;
a class that is not a LightningModule / LightningDataModule is refused (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from finesweep.search.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[1]

MODULE = '''
from typing import Literal
import pytorch_lightning as pl
from torch import nn


class ConvEncoder(nn.Module):
    def __init__(self, width: int = 16, depth: int = 2, kernel: Literal[3, 5] = 3):
        super().__init__()


class MLPEncoder(nn.Module):
    def __init__(self, width: int = 64, dropout: float = 0.1):
        super().__init__()


class Head(nn.Module):
    def __init__(self, hidden_units: int = 32):
        super().__init__()


class Classifier(pl.LightningModule):
    def __init__(self, encoder: nn.Module, optimizer: Literal["adam", "sgd"] = "adam", lr: float = 1e-3,
                 momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__()


class WithHead(pl.LightningModule):
    """Only one class beside it has 'head' in its name: that one is fixed."""

    def __init__(self, head: nn.Module, lr: float = 1e-3):
        super().__init__()


class NeedsThings(pl.LightningModule):
    def __init__(self, n_classes: int, backbone: "pl.LightningModule", lr: float = 1e-3):
        super().__init__()


class Data(pl.LightningDataModule):
    def __init__(self, batch_size: int = 32):
        super().__init__()
'''


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "initmodel.py").write_text(MODULE)
    return tmp_path


def init(folder: Path, model: str, data: str = "initmodel.Data") -> subprocess.CompletedProcess[str]:
    out = folder / f"{model.rsplit('.', 1)[-1]}.yaml"
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), "init", model, "--data", data, "--out", str(out)],
                          cwd=folder, capture_output=True, text=True, timeout=300)


def space_of(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["space"]


def test_several_classes_beside_the_model_become_a_class_choice(folder):
    done = init(folder, "initmodel.Classifier")
    assert done.returncode == 0, done.stderr
    path = folder / "Classifier.yaml"
    space = space_of(path)
    slot = "model.encoder.class_path"
    assert space[slot] == {"type": "categorical", "choices": ["initmodel.ConvEncoder", "initmodel.MLPEncoder"]}
    # Both take a width: one range covering both suggestions, for either class.
    assert space["model.encoder.init_args.width"] == {"type": "int", "low": 4, "high": 256, "log": True}
    assert space["model.encoder.init_args.depth"]["when"] == {slot: "initmodel.ConvEncoder"}
    assert space["model.encoder.init_args.kernel"] == {"type": "categorical", "choices": [3, 5],
                                                       "when": {slot: "initmodel.ConvEncoder"}}
    assert space["model.encoder.init_args.dropout"]["when"] == {slot: "initmodel.MLPEncoder"}
    assert space["model.momentum"]["when"] == {"model.optimizer": "sgd"}  # only sgd reads it
    assert "when" not in space["model.weight_decay"]
    assert "encoder" not in (yaml.safe_load(path.read_text())["model"]["init_args"] or {})
    spec = parse_spec(path)  # what init writes runs as it is
    assert spec.targets["model.encoder.init_args.dropout"] == ("model", "encoder", "init_args", "dropout")


def test_the_one_class_named_like_the_argument_is_fixed_and_its_numbers_searched(folder):
    done = init(folder, "initmodel.WithHead")
    assert done.returncode == 0, done.stderr
    path = folder / "WithHead.yaml"
    written = yaml.safe_load(path.read_text())
    assert written["model"]["init_args"]["head"] == {"class_path": "initmodel.Head", "init_args": {}}
    assert space_of(path)["model.head.init_args.hidden_units"] == {"type": "int", "low": 8, "high": 128, "log": True}
    parse_spec(path)


def test_a_required_argument_init_cannot_fill_is_refused_by_the_check_by_name(folder):
    done = init(folder, "initmodel.NeedsThings")
    assert done.returncode == 0, done.stderr
    path = folder / "NeedsThings.yaml"
    assert "null" not in path.read_text().split("data:")[0]  # no null that would read as a value
    with pytest.raises(SpecError) as caught:
        parse_spec(path)
    problems = {problem.path: problem for problem in caught.value.problems}
    assert set(problems) == {("model", "init_args", "n_classes"), ("model", "init_args", "backbone")}
    assert "required argument 'n_classes'" in problems[("model", "init_args", "n_classes")].expected


@pytest.mark.parametrize(("model", "data", "says"), [
    ("initmodel.ConvEncoder", "initmodel.Data", "initmodel.ConvEncoder is not a LightningModule"),
    ("initmodel.Classifier", "initmodel.Head", "initmodel.Head is not a LightningDataModule"),
])
def test_a_class_of_the_wrong_kind_is_refused(folder, model, data, says):
    done = init(folder, model, data)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert not list(folder.glob("*.yaml"))
