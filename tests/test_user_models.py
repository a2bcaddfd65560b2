"""Sweeping a user's own LightningModule and LightningDataModule, unmodified.

The user's module is written into a temporary folder outside the repository; it never imports
finesweep and reports only what it logs with ``self.log``. Every bad spec for such a model is
refused with one located problem (exit 2, before Ray); the whole workflow (sweep, status,
export, train, ensemble) runs from another working directory; ``best.yaml`` runs under a real
``LightningCLI``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from finesweep.search.spec import SpecError, parse_spec
from test_spec_validation import CLI_LOOP  # the same in-process loop over many specs

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = str(ROOT / "launch.py")

USER_MODULE = '''
"""Somebody's own model: plain Lightning, no finesweep."""
from typing import Literal, Optional

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class BlobData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 16, samples: int = 240, path: Optional[str] = None):
        super().__init__()
        if path is not None:
            open(path).close()  # a file the data needs: a missing one fails right here
        self.batch_size, self.samples = batch_size, samples

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 3, (self.samples,), generator=g)
        x = torch.randn(3, 6, generator=g)[y] + torch.randn(self.samples, 6, generator=g)
        a, b = int(self.samples * 0.6), int(self.samples * 0.8)
        self.sets = [TensorDataset(x[s], y[s]) for s in (slice(0, a), slice(a, b), slice(b, None))]

    def train_dataloader(self):
        return DataLoader(self.sets[0], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.sets[1], batch_size=64)

    def test_dataloader(self):
        return DataLoader(self.sets[2], batch_size=64)


class TinyNet(pl.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 16, act: Literal["relu", "tanh"] = "relu",
                 encoder: Optional[nn.Module] = None):
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        self.encoder = encoder
        width = encoder.out_features if isinstance(encoder, nn.Linear) else 6
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU() if act == "relu" else nn.Tanh(),
                                 nn.Linear(hidden, 3))

    def forward(self, x):
        return self.net(self.encoder(x) if self.encoder is not None else x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("test_loss", F.cross_entropy(logits, y))
        self.log("test_accuracy", (logits.argmax(1) == y).float().mean())

    def predict_step(self, batch, batch_idx):
        return self(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class NeedsClasses(TinyNet):
    def __init__(self, n_classes: int, lr: float = 0.05, hidden: int = 16):
        super().__init__(lr=lr, hidden=hidden)
'''

BROKEN_MODULE = "raise ZeroDivisionError('this module cannot be imported')\n"

BASE = """\
name: tiny
model:
  class_path: usermodel.TinyNet
  init_args: {act: relu}
data:
  class_path: usermodel.BlobData
  init_args: {batch_size: 16}
trainer:
  gradient_clip_val: 1.0
metric: val_loss
mode: min
space:
  model.lr: {type: float, low: 0.01, high: 0.3, log: true}
  model.hidden: {type: int, low: 4, high: 32}
  data.batch_size: {type: categorical, choices: [16, 32]}
strategy: {name: random, seed: 0}
scheduler: none
budget: {trials: 4, max_epochs: 2}
resources: {cpus: 1, concurrency: 2}
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    if text.count(old) != 1:
        raise ValueError(f"{old!r} occurs {text.count(old)} times in the base spec, not once")
    return text.replace(old, new)


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """A folder outside the repository holding the user's module (and a broken one)."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "usermodel.py").write_text(USER_MODULE)
    (folder / "brokenmodel.py").write_text(BROKEN_MODULE)
    return folder


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    key: str  # the key path as rendered
    at: str | None  # how the problem's line starts, or None
    says: tuple[str, ...] = ()


BAD_USER_SPECS = [
    Bad("module_not_found", edit("usermodel.TinyNet", "nosuchmodule.TinyNet"), "model.class_path", "class_path:",
        ("cannot import module 'nosuchmodule'", "searched:")),
    Bad("class_not_in_module", edit("usermodel.TinyNet", "usermodel.TinyNte"), "model.class_path",
        "class_path: usermodel.TinyNte", ("has no class 'TinyNte'", "TinyNet")),
    Bad("not_a_class_path", edit("usermodel.TinyNet", "TinyNet"), "model.class_path", "class_path: TinyNet",
        ("not a class path",)),
    Bad("module_raises_on_import", edit("usermodel.TinyNet", "brokenmodel.TinyNet"), "model.class_path",
        "class_path: brokenmodel", ("importing module 'brokenmodel' failed", "ZeroDivisionError")),
    Bad("model_is_not_a_lightning_module", edit("usermodel.TinyNet", "usermodel.BlobData"),
        "model.class_path", "class_path: usermodel.BlobData\n  init_args: {act", ("a LightningModule subclass",)),
    Bad("data_class_that_is_a_model", edit("usermodel.BlobData", "usermodel.TinyNet"), "data.class_path",
        "class_path: usermodel.TinyNet\n  init_args: {batch", ("a LightningDataModule subclass",)),
    Bad("unknown_init_argument", edit("{act: relu}", "{act: relu, hiden: 8}"), "model.init_args.hiden",
        "init_args: {act", ("unknown key 'hiden'", "did you mean `hidden`?")),
    Bad("mistyped_init_argument", edit("{act: relu}", "{act: relu, hidden: 2.5}"), "model.init_args.hidden",
        "init_args: {act", ("expected an integer", "2.5")),
    Bad("choice_not_in_literal", edit("{act: relu}", "{act: sigmoid}"), "model.init_args.act", "init_args: {act",
        ("one of relu, tanh", "'sigmoid'")),
    Bad("required_argument_missing", edit("usermodel.TinyNet\n  init_args: {act: relu}",
                                          "usermodel.NeedsClasses\n  init_args: {}"),
        "model.init_args.n_classes", "init_args: {}", ("required argument 'n_classes'", "none")),
    Bad("init_args_not_a_mapping", edit("{act: relu}", "[relu]"), "model.init_args", "init_args: [relu]",
        ("a mapping of arguments",)),
    Bad("searched_argument_unknown", edit("model.hidden:", "model.hiden:"), "space.model.hiden", "model.hiden:",
        ("unknown parameter 'hiden'", "did you mean `hidden`?")),
    Bad("searched_section_unknown", edit("model.hidden:", "modle.hidden:"), "space.modle.hidden",
        "modle.hidden:", ("model.ARG, data.ARG or trainer.OPTION", "did you mean `model`?")),
    Bad("float_range_for_an_int_argument", edit("model.hidden: {type: int", "model.hidden: {type: float"),
        "space.model.hidden.type", "model.hidden:", ("int (this setting takes whole numbers)",)),
    Bad("searched_choice_not_in_literal", edit("data.batch_size: {type: categorical, choices: [16, 32]}",
                                               "model.act: {type: categorical, choices: [relu, sigmoid]}"),
        "space.model.act.choices[1]", "model.act:", ("one of relu, tanh", "'sigmoid'")),
    Bad("trainer_option_unknown", edit("gradient_clip_val: 1.0", "gradient_clip_vall: 1.0"),
        "trainer.gradient_clip_vall", "gradient_clip_vall:", ("did you mean `gradient_clip_val`?",)),
    Bad("trainer_option_finesweep_sets", edit("gradient_clip_val: 1.0", "max_epochs: 5"), "trainer.max_epochs",
        "max_epochs: 5", ("budget.max_epochs",)),
    Bad("trainer_option_mistyped", edit("gradient_clip_val: 1.0", "gradient_clip_val: lots"),
        "trainer.gradient_clip_val", "gradient_clip_val:", ("'lots' (a string)",)),
    Bad("searched_trainer_option_finesweep_sets",
        edit("data.batch_size: {type: categorical, choices: [16, 32]}",
             "trainer.accelerator: {type: categorical, choices: [cpu, gpu]}"),
        "space.trainer.accelerator", "trainer.accelerator:", ("resources.gpus",)),
    Bad("nested_class_argument_wrong", edit("{act: relu}", "{act: relu, encoder: {class_path: torch.nn.Linear, "
                                                          "init_args: {in_featurez: 6, out_features: 4}}}"),
        "model.init_args.encoder.init_args.in_featurez", "init_args: {act", ("did you mean `in_features`?",)),
    Bad("nested_searched_path_without_init_args", edit("model.hidden:", "model.encoder.width.x:"),
        "space.model.encoder.width.x", "model.encoder.width.x:", ("model.encoder.init_args.NAME",)),
    Bad("mode_missing_for_an_unknown_metric", edit("metric: val_loss\nmode: min", "metric: val_thing"),
        "mode", None, ("min or max", "'val_thing'")),
    Bad("metric_not_a_name", edit("metric: val_loss", "metric: 3"), "metric", "metric: 3",
        ("a value the model logs",)),
    Bad("data_file_missing", edit("{batch_size: 16}", "{batch_size: 16, path: nothere.csv}"), "data", "data:",
        ("data the DataModule can load", "nothere.csv")),
    Bad("model_section_missing", edit("model:\n  class_path: usermodel.TinyNet\n  init_args: {act: relu}\n", ""),
        "model", None, ("a `model:` entry",)),
    Bad("data_section_missing", edit("data:\n  class_path: usermodel.BlobData\n  init_args: {batch_size: 16}\n",
                                     ""), "data", None, ("a `data:` entry",)),
    Bad("task_and_model_both", edit("name: tiny", "name: tiny\ntask: debug"), "model", "model:",
        ("either `task:` or `model:`",)),
    Bad("task_with_a_data_class", edit("model:\n  class_path: usermodel.TinyNet\n  init_args: {act: relu}\n",
                                       "task: debug\n").replace("model.lr", "learning_rate")
        .replace("model.hidden", "hidden_units").replace("  data.batch_size: {type: categorical, choices: [16, 32]}\n",
                                                          ""),
        "data.class_path", "class_path: usermodel.BlobData", ("drop `task:`",)),
]


def line_of(text: str, start: str) -> int:
    numbers = [n for n, line in enumerate(text.splitlines(), 1)
               if "\n".join(text.splitlines()[n - 1:]).lstrip().startswith(start)
               or line.lstrip().startswith(start)]
    if not numbers:
        raise ValueError(f"{start!r} starts no line")
    return numbers[0]


def test_base_user_spec_is_valid(user_folder):
    spec_path = user_folder / "spec.yaml"
    spec_path.write_text(BASE)
    spec = parse_spec(spec_path)
    assert spec.task is None and spec.model.class_path == "usermodel.TinyNet"
    assert spec.targets["data.batch_size"] == ("data", "batch_size")
    config = spec.training_config({"model.lr": 0.1, "model.hidden": 8, "data.batch_size": 32})
    assert config["model"] == {"class_path": "usermodel.TinyNet", "init_args": {"act": "relu", "lr": 0.1, "hidden": 8}}
    assert config["data"]["init_args"] == {"batch_size": 32}
    assert config["trainer"] == {"gradient_clip_val": 1.0}


def test_table_has_at_least_twenty_distinct_cases():
    assert len(BAD_USER_SPECS) >= 20
    assert len({c.id for c in BAD_USER_SPECS}) == len({c.text for c in BAD_USER_SPECS}) == len(BAD_USER_SPECS)


@pytest.mark.parametrize("case", BAD_USER_SPECS, ids=lambda c: c.id)
def test_bad_user_spec_gives_one_located_problem(case, user_folder):
    spec_path = user_folder / "spec.yaml"
    spec_path.write_text(case.text)
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_path)
    error = caught.value
    message = str(error)
    assert len(error.problems) == 1, message
    rendered = message.splitlines()[1]
    where = f"{spec_path}:{line_of(case.text, case.at)}" if case.at else f"{spec_path}"
    assert rendered.startswith(f"  - {where}"), message
    assert f": {case.key}: expected " in rendered, message
    for fragment in case.says:
        assert fragment in rendered, message


def test_a_nested_class_argument_is_searched_by_its_dotted_path(user_folder):
    text = edit("{act: relu}", "{act: relu, encoder: {class_path: torch.nn.Linear, "
                               "init_args: {in_features: 6, out_features: 4}}}")
    text = edit("model.hidden:", "model.encoder.init_args.out_features:", text)
    spec_path = user_folder / "spec.yaml"
    spec_path.write_text(text)
    spec = parse_spec(spec_path)
    config = spec.training_config({"model.encoder.init_args.out_features": 9})
    assert config["model"]["init_args"]["encoder"] == {"class_path": "torch.nn.Linear",
                                                      "init_args": {"in_features": 6, "out_features": 9}}
    from finesweep.models.components import instantiate

    model = instantiate(config["model"]["class_path"], config["model"]["init_args"])
    assert model.encoder.out_features == 9 and model.net[0].in_features == 9


def test_relative_paths_resolve_against_the_spec_folder(user_folder, tmp_path, monkeypatch):
    (user_folder / "rows.csv").write_text("x\n")
    spec_path = user_folder / "spec.yaml"
    spec_path.write_text(edit("{batch_size: 16}", "{batch_size: 16, path: rows.csv}"))
    monkeypatch.chdir(tmp_path)  # anywhere but the spec's folder
    spec = parse_spec(spec_path)
    assert spec.data.init_args["path"] == str(user_folder / "rows.csv")
    assert spec.raw["data"]["init_args"]["path"] == str(user_folder / "rows.csv")  # the run's spec.yaml copy




def test_every_bad_user_spec_exits_2_through_the_cli_before_ray(user_folder, tmp_path):
    pairs = []
    for case in BAD_USER_SPECS:
        spec = user_folder / f"{case.id}.yaml"
        spec.write_text(case.text)
        pairs.append((spec, tmp_path / f"run_{case.id}"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-c", CLI_LOOP, *[str(p) for pair in pairs for p in pair]],
                          cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not report["ray_imported"]
    for (spec, out), result in zip(pairs, report["results"], strict=True):
        assert result["code"] == 2, (spec.name, result)
        assert f"{spec}" in result["stderr"] and "expected" in result["stderr"], (spec.name, result)
        assert not out.exists(), spec.name


# ---- real sweeps ---------------------------------------------------------------------------

def _cli(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, LAUNCH, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_the_whole_workflow_on_a_users_own_model_from_another_directory(user_folder, tmp_path):
    spec_path = user_folder / "spec.yaml"
    spec_path.write_text(BASE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_dir = tmp_path / "runs" / "tiny"

    swept = _cli("sweep", spec_path, "--out", run_dir, cwd=elsewhere)
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
    assert "trials: COMPLETE 4, PRUNED 0, FAIL 0" in swept.stdout

    status = _cli("status", run_dir, cwd=tmp_path)
    assert status.returncode == 0 and "COMPLETE 4" in status.stdout, status.stderr

    exported = _cli("export", run_dir, "--top-k", "2", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    best = run_dir / "best.yaml"
    config = yaml.safe_load(best.read_text())
    assert set(config) == {"seed_everything", "trainer", "model", "data"}
    assert config["model"]["class_path"] == "usermodel.TinyNet"
    assert config["trainer"] == {"gradient_clip_val": 1.0, "max_epochs": 2}
    record = {k: v for k, v in (line[3:].split(": ", 1) for line in best.read_text().splitlines()
                                if line.startswith("#% ") and ": " in line and not line.startswith("#%  "))}
    sweep_value = float(record["value"])

    # train (retrain/ or --out) and ensemble (ensemble.yaml) read the run directory and write apart:
    # they run at once, each mostly importing torch and Lightning on its own core.
    with ThreadPoolExecutor(3) as pool:
        training = pool.submit(_cli, "train", best, cwd=tmp_path / "runs")
        longer_training = pool.submit(_cli, "train", best, "--max-epochs", "3", "--seed", "7",
                                      "--out", tmp_path / "longer", cwd=elsewhere)
        ensembling = pool.submit(_cli, "ensemble", run_dir, "--top-k", "2", cwd=elsewhere)
        trained, longer, ensembled = training.result(), longer_training.result(), ensembling.result()
    assert trained.returncode == 0, trained.stdout + trained.stderr
    retrained = float(re.search(r"val_loss (\d+\.\d+) \(sweep: ", trained.stdout).group(1))
    assert retrained == pytest.approx(sweep_value, abs=5e-5), trained.stdout
    assert re.search(r"test \(held out\): test_loss \d\.\d+, test_accuracy \d\.\d+", trained.stdout), trained.stdout

    assert longer.returncode == 0, longer.stderr
    assert "(3 epochs, seed 7)" in longer.stdout and "(sweep: " not in longer.stdout

    assert ensembled.returncode == 0, ensembled.stdout + ensembled.stderr
    assert "ensemble (mean probabilities)" in ensembled.stdout
    again = _cli("ensemble", run_dir / "ensemble.yaml", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[2] == ensembled.stdout.splitlines()[2]  # the ensemble row, same scores


@pytest.mark.slow
def test_a_metric_the_module_never_logs_stops_the_sweep_after_the_first_trial(user_folder, tmp_path):
    spec_path = user_folder / "spec.yaml"
    spec_path.write_text(edit("budget: {trials: 4", "budget: {trials: 12",
                              edit("metric: val_loss\nmode: min", "metric: val_acc\nmode: max")))
    run_dir = tmp_path / "run"
    # The dry run finds it before Ray starts, at the `metric:` key, naming what the module logs.
    refused = _cli("sweep", spec_path, "--out", run_dir, cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "metric: expected a metric the module logs in validation" in refused.stderr
    assert "the module logged: train_loss, val_loss" in refused.stderr
    assert "starting Ray" not in refused.stdout and not run_dir.exists()
    # Without it, the first trial that fails on it stops the sweep.
    swept = _cli("sweep", spec_path, "--out", run_dir, "--no-dry-run", cwd=tmp_path)
    assert swept.returncode == 2, swept.stdout + swept.stderr
    assert "metric 'val_acc' was never logged; the module logged: train_loss, val_loss" in swept.stdout
    import optuna

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run_dir / 'study.db'}")
    # At most the trials already running when the first one failed (concurrency 2), not all 12;
    # one that was still running is left to a resume.
    assert 1 <= len(study.trials) <= 2
    assert [t.state.name for t in study.trials].count("FAIL") == 1
    assert {t.state.name for t in study.trials} <= {"FAIL", "RUNNING"}


@pytest.mark.slow
@pytest.mark.parametrize("example", ["wine", "diabetes", "encoders"])
def test_the_examples_sweep_and_their_exports_retrain(example, tmp_path):
    run_dir = tmp_path / example
    swept = _cli("sweep", ROOT / "examples" / example / "sweep.yaml", "--out", run_dir, cwd=tmp_path)
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
    assert "FAIL 0" in swept.stdout
    with ThreadPoolExecutor(2) as pool:  # (as above) read the run directory, write apart
        training = pool.submit(_cli, "train", run_dir / "best.yaml", cwd=tmp_path)
        ensembling = pool.submit(_cli, "ensemble", run_dir, "--top-k", "2", cwd=tmp_path)
        if example in ("wine", "encoders"):  # encoders: nested classes, callbacks and a class choice
            _best_yaml_runs_under_lightning_cli(run_dir / "best.yaml", ROOT / "examples" / example, tmp_path)
        trained, ensembled = training.result(), ensembling.result()
    assert trained.returncode == 0, trained.stderr
    assert "(sweep: " in trained.stdout
    assert ensembled.returncode == 0, ensembled.stdout + ensembled.stderr
    if example == "diabetes":  # a regression model: its predictions are averaged, scored by mse/mae
        assert "ensemble (mean predictions)" in ensembled.stdout and "val_mse" in ensembled.stdout
    else:
        assert "ensemble (mean probabilities)" in ensembled.stdout and "val_acc" in ensembled.stdout


def _best_yaml_runs_under_lightning_cli(best: Path, module_dir: Path, tmp_path: Path) -> None:
    """A plain ``LightningCLI()`` (subclass mode, no finesweep) fits best.yaml for one epoch."""
    script = textwrap.dedent("""
        import sys
        from pytorch_lightning.cli import LightningCLI
        cli = LightningCLI(args=["fit", "--config", sys.argv[1], "--trainer.max_epochs=1",
                                 "--trainer.enable_progress_bar=false"], run=True)
        print("fitted epochs:", cli.trainer.current_epoch)
    """)
    work = tmp_path / "lightning_cli"
    work.mkdir()
    done = subprocess.run([sys.executable, "-c", script, str(best)], cwd=work, capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(module_dir)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fitted epochs: 1" in done.stdout


def test_init_writes_a_valid_starting_spec(user_folder, tmp_path):
    out = user_folder / "start.yaml"
    done = _cli("init", "usermodel:TinyNet", "--data", "usermodel.BlobData", "--out", out, cwd=user_folder)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "model.lr: {type: float, low: 0.005, high: 0.5, log: true}" in text
    assert "model.hidden: {type: int, low: 4, high: 64, log: true}" in text
    assert "model.act: {type: categorical, choices: [relu, tanh]}" in text
    assert "data.batch_size: {type: categorical, choices: [16, 32, 64, 128]}" in text
    spec = parse_spec(out)  # what init writes is a spec that runs as it is
    assert {"model.lr", "model.hidden", "model.act", "data.batch_size"} <= set(spec.targets)
    listed = _cli("tasks", cwd=tmp_path)
    assert listed.returncode == 0 and "image_classification" in listed.stdout and "DigitsData" in listed.stdout


def test_a_sweep_spec_given_to_train_is_named_as_such_in_one_line(tmp_path):
    done = _cli("train", ROOT / "spaces" / "digits_cnn.yaml", cwd=tmp_path)
    assert done.returncode == 2
    problems = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, done.stderr
    assert "expected an exported config (best.yaml), found a sweep spec" in problems[0]
    assert "run `launch.py export RUN_DIR` first" in problems[0]


def test_the_data_summary_says_what_was_read_and_the_split_sizes():
    from finesweep.search.sweep import describe_data

    summary = describe_data(parse_spec(ROOT / "spaces" / "digits_cnn.yaml"))
    assert summary == "scikit-learn digits (real 8x8 images), digits 0-9; train 1077, val 360, test 360"


def test_a_datamodule_without_a_summary_gets_none(user_folder):
    from finesweep.search.sweep import describe_data

    spec_path = user_folder / "spec.yaml"
    spec_path.write_text(BASE)
    assert describe_data(parse_spec(spec_path)) is None


def test_ensembles_average_class_scores_or_regression_outputs_and_refuse_anything_else():
    import torch
    from finesweep.models.inference import NotEnsemblable, as_averageable, kind_of, predictions, scores

    assert kind_of(torch.zeros(4, 3)) == "logits"
    assert kind_of(torch.zeros(4)) == kind_of(torch.zeros(4, 1)) == "regression"
    with pytest.raises(NotEnsemblable, match=r"shape \(4, 2, 3\)"):
        kind_of(torch.zeros(4, 2, 3))
    regression = scores(as_averageable(torch.tensor([1.0, 3.0]), "regression"), torch.tensor([2.0, 2.0]), "regression")
    assert regression == {"mse": 1.0, "mae": 1.0}

    class ReturnsADict(torch.nn.Module):
        def predict_step(self, batch, batch_idx):
            return {"logits": batch[0]}

    with pytest.raises(NotEnsemblable, match="predict_step returned dict"):
        predictions(ReturnsADict(), [(torch.zeros(2, 3), torch.zeros(2))])
    with pytest.raises(NotEnsemblable, match=r"batches of \(inputs\.\.\., target\)"):
        predictions(ReturnsADict(), [torch.zeros(2, 3)])


def test_a_fixed_false_is_kept_and_a_non_boolean_is_refused(tmp_path):
    spec_path = tmp_path / "text.yaml"
    spec_path.write_text("name: t\ntask: text_classification\nmetric: val_acc\n"
                         "space:\n  bidirectional: false\n  layers: {type: int, low: 1, high: 2}\n")
    spec = parse_spec(spec_path)
    assert spec.training_config({"layers": 1})["model"]["init_args"]["bidirectional"] is False
    spec_path.write_text(spec_path.read_text().replace("bidirectional: false", "bidirectional: nope"))
    with pytest.raises(SpecError, match=r"space\.bidirectional: expected true or false, found 'nope'"):
        parse_spec(spec_path)
