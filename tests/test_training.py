"""``training.fit`` on the digits CNN and the debug task: it trains, keeps and saves its best
weights, repeats itself under one seed, resumes from its training state, never leaks the test
split, and stops with a clear error when the module logs no usable metric."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from finesweep.models.debug import DebugClassifier, DebugData
from finesweep.models.image_classification import load_digits_split
from finesweep.models.inference import load_model
from finesweep.models.run import TrainingRun
from finesweep.models.tasks import TASKS
from finesweep.models.training import MetricNotLoggedError, NonFiniteMetricError, fit, trained_epochs
from torch.nn import functional as F

IMAGE, DEBUG = TASKS["image_classification"], TASKS["debug"]
TINY = {"conv_layers": 1, "channels": 8, "hidden_units": 16, "learning_rate": 0.01}


def digits_run(model_args: dict, *, epochs: int = 1, seed: int = 0) -> TrainingRun:
    return TrainingRun(model={"class_path": IMAGE.model, "init_args": model_args},
                       data={"class_path": IMAGE.data, "init_args": {}},
                       trainer={}, max_epochs=epochs, seed=seed, metric="val_acc", mode="max")


def debug_run(model: str = DEBUG.model, *, trainer: dict | None = None, epochs: int = 1) -> TrainingRun:
    return TrainingRun(model={"class_path": model, "init_args": {}}, data={"class_path": DEBUG.data, "init_args": {}},
                       trainer=trainer or {}, max_epochs=epochs, seed=0, metric="val_acc", mode="max")


class ValLossOnly(DebugClassifier):
    """Logs ``val_loss`` but not the ``val_acc`` the run ranks by."""

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        inputs, labels = batch
        self.log("val_loss", F.cross_entropy(self(inputs), labels))


class CountsBatches(DebugClassifier):
    """Logs how many training batches each epoch ran."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.log("train_batches", float(batch_idx + 1), on_step=False, on_epoch=True, reduce_fx="max")
        return super().training_step(batch, batch_idx)


def test_split_is_disjoint_stratified_and_normalised_on_train_only():
    splits = load_digits_split(0.2, 0.2, 0)
    sizes = [len(part[1]) for part in (splits.train, splits.val, splits.test)]
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == 360
    train = splits.train[0]
    assert train.mean().abs() < 1e-4 and (train.std() - 1).abs() < 1e-3
    rows = {tuple(x.flatten().tolist()) for x in splits.val[0]}
    assert not rows & {tuple(x.flatten().tolist()) for x in splits.test[0]}
    assert set(splits.val[1].tolist()) == set(range(10))


def test_two_epochs_report_metrics_and_save_loadable_best_weights(tmp_path):
    epochs = []
    run = digits_run(TINY, epochs=2)
    result = fit(run, on_epoch_end=lambda epoch, m: epochs.append((epoch, m)),
                 checkpoint_path=tmp_path / "model.pt", threads=1, evaluate_test=True)
    assert [epoch for epoch, _ in epochs] == [1, 2]
    assert set(epochs[0][1]) == {"train_loss", "val_loss", "val_acc"}
    assert result.best["val_acc"] == max(m["val_acc"] for _, m in epochs)
    assert result.best["val_acc"] > 0.5, "two epochs on digits beat chance (0.1) by far"
    assert set(result.test) == {"test_loss", "test_acc"}
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert any(k.startswith("head.") for k in state)

    # The saved weights are the best epoch's: rebuilt from the run, they score its val_acc again.
    model, data = load_model(run, tmp_path / "model.pt")
    images, labels = data.splits.val
    with torch.no_grad():
        accuracy = (model(images).argmax(dim=1) == labels).float().mean().item()
    assert accuracy == pytest.approx(result.best["val_acc"], abs=1e-6)


def test_same_seed_same_result():
    first, second = (fit(digits_run(TINY, seed=7), threads=1) for _ in range(2))
    assert first.history == second.history


def test_diverging_training_raises_non_finite_error():
    run = digits_run({**TINY, "learning_rate": 1e12, "optimizer": "sgd", "momentum": 0.99,
                      "normalization": "none", "lr_schedule": "constant"})
    with pytest.raises(NonFiniteMetricError, match="non-finite"):
        fit(run, threads=1)


def test_a_metric_the_module_does_not_log_names_what_it_does_log():
    run = debug_run(f"{__name__}.ValLossOnly")
    with pytest.raises(MetricNotLoggedError, match=r"'val_acc' was never logged; the module logged: .*val_loss"):
        fit(run, threads=1)


def test_trainer_options_of_the_run_reach_the_trainer():
    model = f"{__name__}.CountsBatches"
    full = fit(debug_run(model), threads=1)
    limited = fit(debug_run(model, trainer={"limit_train_batches": 2}, epochs=2), threads=1)
    assert full.history[0]["train_batches"] == 5, "153 training examples in batches of 32"
    assert [h["train_batches"] for h in limited.history] == [2.0, 2.0]


def test_a_run_resumed_from_its_training_state_goes_on_after_the_saved_epoch(tmp_path):
    run = digits_run({**TINY, "optimizer": "adam", "lr_schedule": "cosine"}, epochs=2, seed=3)
    state = tmp_path / "state.ckpt"
    first = fit(run, threads=1, state_path=state, checkpoint_path=tmp_path / "first.pt")
    saved = torch.load(state, map_location="cpu", weights_only=True)  # data only, no pickled code
    assert saved["epoch"] == 1 and saved["optimizer_states"] and saved["lr_schedulers"]
    assert trained_epochs(state) == first.history

    reported = []
    resumed = fit(run.with_changes(max_epochs=4), threads=1, resume_from=state,
                  checkpoint_path=tmp_path / "resumed.pt", on_epoch_end=lambda epoch, m: reported.append(epoch))
    assert resumed.resumed_from_epoch == 2
    assert reported == [3, 4], "only the epochs after the saved state are trained"
    assert resumed.history[:2] == first.history and [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.best["val_acc"] == max(h["val_acc"] for h in resumed.history)
    assert (tmp_path / "resumed.pt").exists(), "the best weights so far are saved even without a new best"


def test_a_resumed_run_trains_exactly_as_an_uninterrupted_one(tmp_path):
    """Batches are shuffled by (seed, epoch), so epochs 3-4 after a resume see the same batches
    as epochs 3-4 of one run (before, the resumed loader restarted epoch 1's order)."""
    run = TrainingRun(model={"class_path": TASKS["image_classification"].model,
                             "init_args": {**TINY, "dropout": 0.0, "lr_schedule": "constant"}},
                      data={"class_path": TASKS["image_classification"].data, "init_args": {}},
                      trainer={}, max_epochs=4, seed=3, metric="val_loss", mode="min")
    uninterrupted = fit(run, threads=1)
    fit(run.with_changes(max_epochs=2), threads=1, state_path=tmp_path / "state.ckpt")
    resumed = fit(run, threads=1, resume_from=tmp_path / "state.ckpt")
    assert [h["val_loss"] for h in resumed.history] == pytest.approx(
        [h["val_loss"] for h in uninterrupted.history], abs=1e-6)


def test_validation_that_never_runs_is_named_as_the_reason():
    run = TrainingRun(model={"class_path": TASKS["debug"].model, "init_args": {}},
                      data={"class_path": TASKS["debug"].data, "init_args": {}},
                      trainer={"check_val_every_n_epoch": 2}, max_epochs=1, seed=0, metric="val_acc", mode="max")
    with pytest.raises(MetricNotLoggedError, match="check_val_every_n_epoch"):
        fit(run)


class NoTestSplit(pl.LightningDataModule):
    """The debug data with train and validation loaders only, as many users' DataModules are."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = DebugData()

    def setup(self, stage: str | None = None) -> None:
        self.inner.setup(stage)

    def train_dataloader(self):
        return self.inner.train_dataloader()

    def val_dataloader(self):
        return self.inner.val_dataloader()


def test_a_datamodule_without_a_test_split_trains_and_reports_no_test_metrics(tmp_path):
    run = TrainingRun(model={"class_path": TASKS["debug"].model, "init_args": {}},
                      data={"class_path": f"{__name__}.NoTestSplit", "init_args": {}},
                      trainer={}, max_epochs=1, seed=0, metric="val_acc", mode="max")
    result = fit(run, evaluate_test=True, checkpoint_path=tmp_path / "model.pt")
    assert result.test == {} and "val_acc" in result.best
    # An ensemble of it is scored on validation alone.
    from finesweep.models.inference import Member, evaluate_ensemble

    scores = evaluate_ensemble([Member("only", run, str(tmp_path / "model.pt"))])
    assert [s.split for s in scores] == ["val"]


def test_an_ensemble_of_a_module_without_predict_step_says_so():
    from finesweep.models.inference import NotEnsemblable, predictions

    class NoPredictStep(pl.LightningModule):
        def forward(self, x):
            return x

    with pytest.raises(NotEnsemblable, match="NoPredictStep has no predict_step"):
        predictions(NoPredictStep(), [(torch.zeros(2, 3), torch.zeros(2))])
