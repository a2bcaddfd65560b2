"""The digits CNN task trains, keeps its best weights and never leaks the test split."""

from __future__ import annotations

import pytest
import torch
from finesweep.models.image_classification import load_digits_split
from finesweep.models.tasks import TASKS
from finesweep.models.training import NonFiniteMetricError, fit, trained_epochs

TASK = TASKS["image_classification"]
TINY = {"conv_layers": 1, "channels": 8, "hidden_units": 16, "learning_rate": 0.01}


def test_split_is_disjoint_stratified_and_normalised_on_train_only():
    bundle = load_digits_split(0.2, 0.2, 0)
    sizes = [len(part[1]) for part in (bundle.train, bundle.val, bundle.test)]
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == 360
    train = bundle.train[0]
    assert train.mean().abs() < 1e-4 and (train.std() - 1).abs() < 1e-3
    rows = {tuple(x.flatten().tolist()) for x in bundle.val[0]}
    assert not rows & {tuple(x.flatten().tolist()) for x in bundle.test[0]}
    assert set(bundle.val[1].tolist()) == set(range(10))


def test_one_epoch_reports_metrics_and_saves_loadable_best_weights(tmp_path):
    epochs = []
    result = fit("image_classification", TASK.resolve(TINY), {}, max_epochs=2, seed=0, metric="val_acc",
                 mode="max", on_epoch_end=lambda epoch, m: epochs.append((epoch, m)),
                 checkpoint_path=tmp_path / "model.pt", threads=1, evaluate_test=True)
    assert [epoch for epoch, _ in epochs] == [1, 2]
    assert set(epochs[0][1]) == {"train_loss", "val_loss", "val_acc"}
    assert result.best["val_acc"] == max(m["val_acc"] for _, m in epochs)
    assert result.best["val_acc"] > 0.5, "two epochs on digits beat chance (0.1) by far"
    assert set(result.test) == {"test_loss", "test_acc"}
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert any(k.startswith("head.") for k in state)


def test_same_seed_same_result():
    first, second = (fit("image_classification", TASK.resolve(TINY), {}, max_epochs=1, seed=7,
                         metric="val_acc", mode="max", threads=1) for _ in range(2))
    assert first.history == second.history


def test_diverging_training_raises_non_finite_error():
    config = TASK.resolve({**TINY, "learning_rate": 1e12, "optimizer": "sgd", "momentum": 0.99,
                           "normalization": "none", "lr_schedule": "constant"})
    with pytest.raises(NonFiniteMetricError, match="non-finite"):
        fit("image_classification", config, {}, max_epochs=1, seed=0, metric="val_acc", mode="max", threads=1)


def test_a_run_resumed_from_its_training_state_goes_on_after_the_saved_epoch(tmp_path):
    config = TASK.resolve({**TINY, "optimizer": "adam", "lr_schedule": "cosine"})
    state = tmp_path / "state.ckpt"
    first = fit("image_classification", config, {}, max_epochs=2, seed=3, metric="val_acc", mode="max",
                threads=1, state_path=state, checkpoint_path=tmp_path / "first.pt")
    saved = torch.load(state, map_location="cpu", weights_only=True)  # data only, no pickled code
    assert saved["epoch"] == 1 and saved["optimizer_states"] and saved["lr_schedulers"]
    assert trained_epochs(state) == first.history

    reported = []
    resumed = fit("image_classification", config, {}, max_epochs=4, seed=3, metric="val_acc", mode="max",
                  threads=1, resume_from=state, checkpoint_path=tmp_path / "resumed.pt",
                  on_epoch_end=lambda epoch, m: reported.append(epoch))
    assert resumed.resumed_from_epoch == 2
    assert reported == [3, 4], "only the epochs after the saved state are trained"
    assert resumed.history[:2] == first.history and [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.best["val_acc"] == max(h["val_acc"] for h in resumed.history)
    assert (tmp_path / "resumed.pt").exists(), "the best weights so far are saved even without a new best"
