"""A user's own model with what a LightningCLI config usually holds, swept for real (Ray,
Lightning, SQLite, TensorBoard files): `trainer.callbacks` (EarlyStopping, LearningRateMonitor),
metrics named `val/acc`, `train/loss`, `test/acc`, a nested encoder class, a predict_step that
returns probabilities; then every command after the sweep on it. And a sweep whose trials all
fail the same way: it stops after three, and a resume runs the rest once the cause is fixed."""

from __future__ import annotations

import io

import pytest
import yaml
from finesweep.search.cli import main as cli_main
from finesweep.search.run_dir import STATE_FILE, trial_dir
from finesweep.search.spec import parse_spec
from finesweep.search.study import load_study
from finesweep.search.sweep import run_sweep
from finesweep.search.views.report import epoch_series, plot_curves
from finesweep.search.views.results import load_sweep
from tensorboard.backend.event_processing import event_accumulator

pytestmark = pytest.mark.slow

OWN_MODEL = '''
from __future__ import annotations

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
    def __init__(self, encoder: nn.Module, lr: float = 0.05) -> None:
        super().__init__()
        self.encoder, self.head, self.lr = encoder, nn.Linear(encoder.out_features, 2), lr

    def forward(self, x):
        return self.head(self.encoder(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch, split):
        x, y = batch
        logits = self(x)
        self.log(f"{split}/loss", F.cross_entropy(logits, y), batch_size=len(y))
        self.log(f"{split}/acc", (logits.argmax(1) == y).float().mean(), batch_size=len(y))

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def predict_step(self, batch, batch_idx=0):
        return F.softmax(self(batch[0]), dim=1)  # probabilities, not logits

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)}


class Blobs(pl.LightningDataModule):
    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 2, (160,), generator=g)
        x = torch.randn(2, 8, generator=g)[y] + 1.5 * torch.randn(160, 8, generator=g)
        self.sets = {"train": TensorDataset(x[:96], y[:96]), "val": TensorDataset(x[96:128], y[96:128]),
                     "test": TensorDataset(x[128:], y[128:])}

    def train_dataloader(self):
        return DataLoader(self.sets["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.sets["val"], batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.sets["test"], batch_size=self.batch_size)
'''

SPEC = """\
name: own_callbacks
model:
  class_path: own_cb.Classifier
  init_args:
    encoder: {class_path: own_cb.Encoder}
data:
  class_path: own_cb.Blobs
trainer:
  log_every_n_steps: 1    # LearningRateMonitor logs every optimizer step (3 an epoch)
  callbacks:
    - class_path: pytorch_lightning.callbacks.LearningRateMonitor
      init_args: {logging_interval: step}
    # No epoch improves val/loss by 10: the second epoch runs out of patience.
    - class_path: pytorch_lightning.callbacks.EarlyStopping
      init_args: {monitor: val/loss, patience: 1, min_delta: 10.0}
metric: val/acc
space:
  model.lr: {type: float, low: 1.0e-2, high: 1.0e-1, log: true}
  model.encoder.init_args.width: {type: int, low: 4, high: 16}
strategy: {name: random, seed: 0}
scheduler: none
budget: {trials: 3, max_epochs: 5}
resources: {cpus: 1, concurrency: 2}
"""


@pytest.fixture(scope="module")
def own_sweep(tmp_path_factory, local_ray):
    root = tmp_path_factory.mktemp("own_callbacks")
    (root / "own_cb.py").write_text(OWN_MODEL)
    (root / "spec.yaml").write_text(SPEC)
    out = io.StringIO()
    result = run_sweep(parse_spec(root / "spec.yaml"), root / "run", out=out)
    return root, result, out.getvalue()


def test_early_stopping_ends_trials_complete_with_their_best_epoch(own_sweep):
    root, result, printed = own_sweep
    study = load_study("own_callbacks", result.storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3, printed
    for trial in study.trials:
        assert trial.user_attrs["epochs"] == 2 and trial.user_attrs["stopped_early"] is True
        assert sorted(trial.intermediate_values) == [1, 2]
        assert trial.value == max(trial.intermediate_values.values())
        assert trial.user_attrs["best_epoch"] in (1, 2)
        assert not (trial_dir(result.run_dir, trial.number) / STATE_FILE).exists(), "state removed at the end"
    assert "COMPLETE after  2 epochs" in printed and "its own callbacks stopped it" in printed
    assert "dry run passed" in printed and "trial   0 started: model.lr " in printed


def test_learning_rates_and_slash_named_metrics_reach_tensorboard(own_sweep):
    root, result, _ = own_sweep
    run = event_accumulator.EventAccumulator(str(result.run_dir / "tensorboard" / "trial_0000"),
                                             size_guidance={"scalars": 0})
    run.Reload()
    tags = set(run.Tags()["scalars"])
    assert {"val/acc", "val/loss", "train/loss", "lr-SGD", "final/val/acc"} <= tags
    # Step by step (3 optimizer steps an epoch), halved each epoch by the StepLR schedule; once only.
    lr = [(e.step, e.value) for e in run.Scalars("lr-SGD")]
    assert [step for step, _ in lr] == list(range(6))
    assert lr[3][1] == pytest.approx(lr[0][1] / 2)
    assert [e.step for e in run.Scalars("val/acc")] == [1, 2]


def test_status_report_ensemble_and_reseed_read_slash_named_metrics(own_sweep):
    from finesweep.search.views.ensemble import build_ensemble
    from finesweep.search.views.robust import robust_export, run_job
    from finesweep.search.views.status import status_text

    root, result, _ = own_sweep
    record = load_sweep(result.run_dir)
    assert "best so far: val/acc" in status_text(record)
    # The report's learning curves: train/loss from the trials' scalars.
    tag, losses = epoch_series(result.run_dir, 0, None)
    assert tag == "train/loss" and sorted(losses) == [1, 2]
    figure = plot_curves(record, record.study.trials, 3)
    assert figure.axes[1].get_ylabel().startswith("train/loss") and figure.axes[1].lines
    # An ensemble of the best trial alone scores the loss its model logged at its best epoch,
    # though its predict_step returns probabilities.
    report = build_ensemble(record, top_k=1)
    best = record.ranked()[0]
    _, val_losses = epoch_series(result.run_dir, best.number, "val/loss")
    assert report.splits["val"]["kind"] == "probabilities"
    assert report.splits["val"]["best_single"]["nll"] == pytest.approx(val_losses[best.user_attrs["best_epoch"]],
                                                                      abs=1e-5)
    # Reseeding retrains with the callbacks (stopped at epoch 2) and reports test/acc in robust.md.
    robust = robust_export(record, lambda jobs: [run_job(job) for job in jobs], top_k=1, reseed=1)
    assert "test/acc (mean +- std)" in (result.run_dir / "robust.md").read_text()
    assert robust.chosen.runs[0]["best_epoch"] in (1.0, 2.0) and "test/acc" in robust.chosen.runs[0]


def test_train_retrains_with_the_callbacks(own_sweep, capsys):
    root, result, _ = own_sweep
    assert cli_main(["train", str(result.run_dir / "best.yaml"), "--out", str(root / "retrain")]) == 0
    printed = capsys.readouterr().out
    assert "its callbacks stopped training after epoch 2 of 5" in printed
    assert "test (held out): test/loss" in printed and "validation: val/loss" in printed
    assert yaml.safe_load((root / "retrain" / "result.yaml").read_text())["epochs"] == 2


FRAGILE = OWN_MODEL + '''

from pathlib import Path


class Fragile(Classifier):
    """Fails in every training step while a file BROKEN lies beside it: a bug the user then fixes."""

    def training_step(self, batch, batch_idx):
        if Path(__file__).with_name("BROKEN").exists():
            raise KeyError(f"no column 'label' in batch {batch_idx} of {len(batch[0])} rows")
        return super().training_step(batch, batch_idx)
'''

FAILING = """\
name: failing
model:
  class_path: fragile.Fragile
  init_args:
    encoder: {class_path: fragile.Encoder}
data:
  class_path: fragile.Blobs
metric: val/acc
space:
  model.lr: {type: float, low: 1.0e-2, high: 1.0e-1, log: true}
strategy: {name: random, seed: 1}
scheduler: none
budget: {trials: 8, max_epochs: 2}
resources: {cpus: 1, concurrency: 2}
"""


def test_trials_failing_the_same_way_stop_the_sweep_and_a_resume_runs_the_rest(tmp_path, local_ray, capsys):
    (tmp_path / "fragile.py").write_text(FRAGILE)
    (tmp_path / "BROKEN").write_text("")
    spec = tmp_path / "failing.yaml"
    spec.write_text(FAILING)
    run_dir = tmp_path / "run"
    # The dry run would refuse this before Ray (test_dry_run.py); without it the trials fail, and
    # the sweep stops after three of them instead of spending its budget.
    assert cli_main(["sweep", str(spec), "--out", str(run_dir), "--no-dry-run"]) == 2
    printed = capsys.readouterr().out
    assert "3 trials in a row failed with the same error (budget.stop_after_failures: 3): " \
           "KeyError: \"no column 'label' in batch 0 of 32 rows\"" in printed, printed
    study = load_study("failing", f"sqlite:///{run_dir / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states.count("FAIL") == 3 and set(states) <= {"FAIL", "RUNNING"} and len(states) <= 4, states
    # The bug fixed, a resume runs the interrupted trial and the four never started.
    (tmp_path / "BROKEN").unlink()
    assert cli_main(["resume", str(run_dir)]) == 0
    study = load_study("failing", f"sqlite:///{run_dir / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert len(states) == 8 and states.count("FAIL") == 3 and states.count("COMPLETE") == 5, states
    assert "done 8/8, running 0, pruned 0, failed 3" in capsys.readouterr().out
