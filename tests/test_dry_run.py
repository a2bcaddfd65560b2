"""The dry run before Ray: which configurations it tries (every class choice at least once),
where in the spec a failure is reported, and the command's behaviour around it: exit 2 before
Ray starts, a located message naming what was logged or which key raised, nothing created.
The commands run in a subprocess, as a user runs them; no Ray is started by any of them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from finesweep.search.dry_run import configurations, spec_key
from finesweep.search.space import CategoricalParam, Condition, FloatParam, IntParam, SearchSpace

ROOT = Path(__file__).resolve().parents[1]

OWN_MODEL = '''
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class Encoder(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, width), nn.ReLU())
        self.out_features = width

    def forward(self, x):
        return self.net(x)


class Classifier(pl.LightningModule):
    def __init__(self, encoder: nn.Module, lr: float = 0.05, warm_start: Path | None = None) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(encoder.out_features, 2)
        self.lr, self.warm_start = lr, warm_start

    def setup(self, stage=None):
        if self.warm_start:
            self.load_state_dict(torch.load(self.warm_start, weights_only=True))

    def forward(self, x):
        return self.head(self.encoder(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y))
        self.log("val/acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class Blobs(pl.LightningDataModule):
    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 2, (128,), generator=g)
        x = torch.randn(2, 8, generator=g)[y] + torch.randn(128, 8, generator=g)
        self.train_set, self.val_set = TensorDataset(x[:96], y[:96]), TensorDataset(x[96:], y[96:])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)
'''

SPEC = """\
name: own
model:
  class_path: own_dry.Classifier
  init_args:
    encoder: {class_path: own_dry.Encoder}
    warm_start: null
data:
  class_path: own_dry.Blobs
trainer:
  callbacks:
    - class_path: pytorch_lightning.callbacks.LearningRateMonitor
    - class_path: pytorch_lightning.callbacks.EarlyStopping
      init_args: {monitor: val/loss, patience: 1}
metric: val/acc
space:
  model.lr: {type: float, low: 1.0e-2, high: 1.0e-1, log: true}
  model.encoder.init_args.width: {type: int, low: 4, high: 16}
strategy: {name: random, seed: 0}
budget: {trials: 2, max_epochs: 2}
"""


def _sweep(tmp_path: Path, spec: str, *flags: str) -> tuple[subprocess.CompletedProcess, float]:
    (tmp_path / "own_dry.py").write_text(OWN_MODEL)
    (tmp_path / "spec.yaml").write_text(spec)
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "sweep", "spec.yaml", "--out", "run", *flags],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    return done, time.monotonic() - started


@pytest.mark.parametrize(("edit", "line", "located"), [
    # A path argument of the user's own module naming a missing file (read in its setup). Its name
    # says nothing of whether it is an input, so the spec check leaves it to the dry run (an
    # `init_from` is refused up front: tests/test_refused_up_front.py).
    (("warm_start: null", "warm_start: missing.pt"), 6,
     "model.init_args.warm_start: expected a configuration that trains (the dry run failed setup and one training "
     "and one validation batch), found FileNotFoundError: [Errno 2] No such file or directory: '{tmp}/missing.pt'"),
    # A callback watching a metric the module does not log: the callback's own argument.
    (("monitor: val/loss", "monitor: val_loss"), 13, "trainer.callbacks[1].init_args.monitor: expected a "
     "configuration that trains (the dry run failed setup and one training and one validation batch), found "
     "RuntimeError: Early stopping conditioned on metric `val_loss` which is not available."),
    # The metric to rank trials by, not among what the module logs: named with what it does log.
    (("metric: val/acc", "metric: val_acc"), 14, "metric: expected a metric the module logs in validation (the dry "
     "run's batch logged none of that name), found metric 'val_acc' was not logged; the module logged: "
     "lr-SGD, train/loss, val/acc, val/loss"),
], ids=["missing_file", "callback_argument", "metric"])
@pytest.mark.slow
def test_a_config_that_cannot_train_is_refused_before_ray_at_its_key(tmp_path, edit, line, located):
    done, seconds = _sweep(tmp_path, SPEC.replace(*edit))
    assert done.returncode == 2, done.stderr[-3000:]
    problem = located.format(tmp=tmp_path)
    assert f"spec.yaml:{line}: {problem}" in done.stderr, done.stderr
    assert "dry run configuration 1 of 1: model.lr=" in done.stderr and "--no-dry-run" in done.stderr
    assert "Traceback" not in done.stderr
    assert "starting Ray" not in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["own_dry.py", "spec.yaml"]  # nothing created
    print(f"refused in {seconds:.1f} s")


@pytest.mark.slow
def test_a_passing_dry_run_prints_one_line_with_its_time(tmp_path):
    """A spec that trains passes its dry run. (An existing file as --out stops the command before
    the dry run: the run directory is checked first, in no time.)"""
    (tmp_path / "run").write_text("a file, not a run directory")
    done, _ = _sweep(tmp_path, SPEC)
    assert done.returncode == 2 and "--out run is a file" in done.stderr
    assert "dry run" not in done.stdout
    done = subprocess.run([sys.executable, "-c", (
        "from finesweep.search.spec import parse_spec; from finesweep.search.dry_run import run_dry_run; "
        "print(run_dry_run(parse_spec('spec.yaml')).line())")], cwd=tmp_path, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("finesweep: dry run passed in ")
    assert "(setup, one training and one validation batch, 1 configuration;" in done.stdout


# ---- which configurations --------------------------------------------------------------------

def test_every_class_choice_is_tried_with_the_parameters_conditional_on_it():
    conv, mlp, gru = "pkg.ConvEncoder", "pkg.MLPEncoder", "pkg.GRUEncoder"
    space = SearchSpace(params=(
        FloatParam("model.lr", 1e-3, 1e-1, log=True),
        CategoricalParam("model.encoder.class_path", (conv, mlp, gru)),
        IntParam("model.encoder.init_args.width", 4, 16, when=(Condition("model.encoder.class_path", (conv,)),)),
        IntParam("model.encoder.init_args.hidden", 4, 16, when=(Condition("model.encoder.class_path", (mlp,)),)),
        CategoricalParam("model.optimizer", ("adam", "sgd")),
        # A class choice that only exists for one optimizer: its condition is made to hold.
        CategoricalParam("model.scheduler.class_path", ("pkg.Step", "pkg.Cosine"),
                         when=(Condition("model.optimizer", ("sgd",)),)),
    ))
    classes = {"model.encoder.class_path": (conv, mlp, gru), "model.scheduler.class_path": ("pkg.Step", "pkg.Cosine")}
    chosen = configurations(space, classes, seed=0)
    assert {c["model.encoder.class_path"] for c in chosen} == {conv, mlp, gru}
    assert {c.get("model.scheduler.class_path") for c in chosen} >= {"pkg.Step", "pkg.Cosine"}
    assert len(chosen) == 3
    for values in chosen:
        assert ("model.encoder.init_args.width" in values) == (values["model.encoder.class_path"] == conv)
        assert ("model.encoder.init_args.hidden" in values) == (values["model.encoder.class_path"] == mlp)
        assert 1e-3 <= values["model.lr"] <= 1e-1
    assert configurations(space, classes, seed=0) == chosen  # seeded
    assert len(configurations(space, {}, seed=0)) == 1


def test_a_failure_is_reported_at_the_spec_key_its_value_came_from():
    spec = SimpleNamespace(
        task=None, raw={"model": {"class_path": "pkg.Net", "init_args": {"init_from": "x.pt"}}},
        targets={"model.lr": ("model", "lr"), "model.encoder.class_path": ("model", "encoder", "class_path"),
                 "model.encoder.init_args.width": ("model", "encoder", "init_args", "width"),
                 "trainer.gradient_clip_val": ("trainer", "gradient_clip_val")})
    assert spec_key(spec, ("model", "init_args", "lr")) == ("space", "model.lr")
    assert spec_key(spec, ("model", "init_args", "encoder", "init_args", "width")) == \
        ("space", "model.encoder.init_args.width")
    # The class itself raised, and the space chose it: its choice is where to look.
    assert spec_key(spec, ("model", "init_args", "encoder")) == ("space", "model.encoder.class_path")
    assert spec_key(spec, ("model", "init_args", "init_from")) == ("model", "init_args", "init_from")
    assert spec_key(spec, ("trainer", "gradient_clip_val")) == ("space", "trainer.gradient_clip_val")
    assert spec_key(spec, ("trainer", "callbacks", 1)) == ("trainer", "callbacks", 1)
    task = SimpleNamespace(task=object(), raw={"task": "debug", "data": {"samples": 64}}, targets={})
    assert spec_key(task, ("data", "init_args", "samples")) == ("data", "samples")
    assert spec_key(task, ("model",)) == ("task",)


def test_the_replay_benchmarks_task_is_dry_run_as_any_model():
    """The replay benchmark's scripted task (a LightningModule that trains nothing) takes the
    ordinary dry run: setup, one training and one validation batch."""
    from finesweep.search.dry_run import run_dry_run
    from finesweep.search.spec import parse_spec

    report = run_dry_run(parse_spec(Path(__file__).resolve().parents[1] / "benchmarks" / "replay.yaml"))
    assert "setup, one training and one validation batch, 1 configuration;" in report.line()


def test_a_callback_that_does_finesweeps_job_and_a_bad_failure_limit_are_located_spec_errors(tmp_path):
    from finesweep.search.spec import SpecError, parse_spec

    (tmp_path / "own_dry.py").write_text(OWN_MODEL)
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("    - class_path: pytorch_lightning.callbacks.LearningRateMonitor\n",
                                 "    - class_path: TQDMProgressBar\n"
                                 "    - class_path: pytorch_lightning.callbacks.ModelCheckpoint\n")
                    .replace("budget: {trials: 2, max_epochs: 2}", "budget: {trials: 2, stop_after_failures: -1}"))
    with pytest.raises(SpecError) as raised:
        parse_spec(path)
    rendered = [p.render(str(path)) for p in raised.value.problems]
    assert rendered == [
        f"{path}:11: trainer.callbacks[0].class_path: expected a callback that leaves checkpoints and progress to "
        "finesweep, found pytorch_lightning.callbacks.progress.tqdm_progress.TQDMProgressBar, a ProgressBar: "
        "finesweep prints the sweep's progress itself: remove it (or set no progress bar)",
        f"{path}:12: trainer.callbacks[1].class_path: expected a callback that leaves checkpoints and progress to "
        "finesweep, found pytorch_lightning.callbacks.ModelCheckpoint, a ModelCheckpoint: finesweep keeps each "
        "trial's best weights itself (and best.yaml names them): remove it",
        f"{path}:20: budget.stop_after_failures: expected an integer >= 0, found -1",
    ], rendered


def test_the_value_or_argument_an_error_names_is_blamed_within_the_part_that_raised():
    from finesweep.search.dry_run import blamed_path

    config = {"model": {"class_path": "pkg.Net", "init_args": {
                  "encoder": {"class_path": "pkg.Conv", "init_args": {"widht": 12, "depth": 2}},
                  "init_from": "/runs/x/missing.pt", "hidden": 64}},
              "data": {"class_path": "pkg.Data", "init_args": {"path": "/data/train.csv", "batch_size": 64}},
              "trainer": {"callbacks": [{"class_path": "EarlyStopping", "init_args": {"monitor": "val_los"}}]}}
    model = ("model",)
    assert blamed_path(config, model, "No such file: '/runs/x/missing.pt'") == ("model", "init_args", "init_from")
    # jsonargparse names the argument, not its value: the deepest argument named.
    assert blamed_path(config, model, "Parser key \"encoder\": Option 'widht' is not accepted") == \
        ("model", "init_args", "encoder", "init_args", "widht")
    assert blamed_path(config, model, "the following arguments are required: encoder") == \
        ("model", "init_args", "encoder")
    # A number is named only as a whole token, and only within the part that raised.
    assert blamed_path(config, model, "expected 64 features, got 8") == ("model", "init_args", "hidden")
    assert blamed_path(config, model, "expected 640 features") == model
    # A file another part read: a string value named anywhere.
    assert blamed_path(config, model, "cannot open /data/train.csv") == ("data", "init_args", "path")
    assert blamed_path(config, ("trainer", "callbacks", 0), "metric `val_los` which is not available") == \
        ("trainer", "callbacks", 0, "init_args", "monitor")
    assert blamed_path(config, model, "CUDA out of memory") == model
