"""The user's Trainer settings and callbacks in every run (``training.fit``, the dry run,
ensembles): EarlyStopping ends a run early and says so, LearningRateMonitor's values reach the
run's scalars (and nothing the module logs twice), callbacks that do finesweep's own job are
refused, the training state is owner-only, a dry run names the part of a config that raised,
and an ensemble of one member scores what the model's own loss says, whatever its predict_step
returns (logits or probabilities)."""

from __future__ import annotations

import random
import stat

import numpy as np
import pytest
import torch
from finesweep.models.debug import DebugClassifier, DebugData
from finesweep.models.run import TrainingRun, metric_split, reserved_callback
from finesweep.models.tasks import TASKS
from finesweep.models.training import fit, user_callbacks
from torch.nn import functional as F

DEBUG = TASKS["debug"]


def debug_run(model: str = DEBUG.model, *, trainer: dict | None = None, epochs: int = 1, metric: str = "val_acc",
              data: str = DEBUG.data, model_args: dict | None = None, data_args: dict | None = None) -> TrainingRun:
    return TrainingRun(model={"class_path": model, "init_args": model_args or {}},
                       data={"class_path": data, "init_args": data_args or {}}, trainer=trainer or {},
                       max_epochs=epochs, seed=0, metric=metric, mode="max")


EARLY_STOP = {"class_path": "pytorch_lightning.callbacks.EarlyStopping",
              "init_args": {"monitor": "val_loss", "patience": 1, "min_delta": 10.0}}
LR_MONITOR = {"class_path": "pytorch_lightning.callbacks.LearningRateMonitor",
              "init_args": {"logging_interval": "step"}}


def test_early_stopping_in_the_trainer_callbacks_ends_the_run_and_says_when():
    stops, reported = [], []
    result = fit(debug_run(trainer={"callbacks": [EARLY_STOP]}, epochs=6), threads=1,
                 on_stop_early=stops.append, on_epoch_end=lambda epoch, m: reported.append(epoch))
    # No epoch improves val_loss by 10: the first sets the best, the second runs out of patience.
    assert reported == [1, 2] and stops == [2]
    assert result.stopped_early and [h["epoch"] for h in result.history] == [1, 2]


def test_a_run_that_reaches_its_epochs_is_not_stopped_early():
    stops = []
    result = fit(debug_run(epochs=2), threads=1, on_stop_early=stops.append)
    assert stops == [] and not result.stopped_early


def test_learning_rate_monitor_logs_to_the_runs_scalars_and_the_modules_metrics_are_not_repeated(tmp_path):
    written: list[tuple[dict, int]] = []
    fit(debug_run(trainer={"callbacks": [LR_MONITOR], "log_every_n_steps": 1}, epochs=2), threads=1,
        scalars=lambda metrics, step: written.append((metrics, step)), log_dir=tmp_path)
    names = {name for metrics, _ in written for name in metrics}
    assert names == {"lr-SGD"}, names
    # logged every optimizer step: 5 batches an epoch
    assert [step for _, step in written] == list(range(10))
    assert all(metrics["lr-SGD"] == pytest.approx(0.05) for metrics, _ in written)
    assert not any(tmp_path.iterdir()), "the run wrote no files of its own into its log folder"


def test_callbacks_that_do_finesweeps_own_job_are_refused():
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar, TQDMProgressBar

    assert "ModelCheckpoint" in reserved_callback(ModelCheckpoint)
    assert "ProgressBar" in reserved_callback(TQDMProgressBar) and "ProgressBar" in reserved_callback(RichProgressBar)
    assert reserved_callback(EarlyStopping) is None

    class OwnCheckpoint(ModelCheckpoint):
        pass

    assert "ModelCheckpoint" in reserved_callback(OwnCheckpoint)
    with pytest.raises(ValueError, match=r"trainer.callbacks\[1\] is a ModelCheckpoint"):
        user_callbacks([EARLY_STOP, {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint"}])


def test_the_training_state_is_owner_only_and_written_through_an_owner_only_folder(tmp_path):
    from finesweep.models.training import discard_checkpoint

    state = tmp_path / "state.ckpt"
    fit(debug_run(epochs=2), threads=1, state_path=state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    staging = tmp_path / ".state.ckpt.partial"
    assert stat.S_IMODE(staging.stat().st_mode) == 0o700 and not any(staging.iterdir())
    discard_checkpoint(state)
    assert not any(tmp_path.iterdir())


def test_a_trials_state_is_not_written_after_its_last_epoch(tmp_path):
    writes = []
    from finesweep.models import training

    original = training.save_private_checkpoint
    training.save_private_checkpoint = lambda trainer, path: (writes.append(trainer.current_epoch + 1),
                                                              original(trainer, path))
    try:
        fit(debug_run(epochs=3), threads=1, state_path=tmp_path / "a.ckpt", final_state=False)
        fit(debug_run(trainer={"callbacks": [EARLY_STOP]}, epochs=5), threads=1, state_path=tmp_path / "b.ckpt",
            final_state=False)
        fit(debug_run(epochs=2), threads=1, state_path=tmp_path / "c.ckpt")
    finally:
        training.save_private_checkpoint = original
    # Nothing goes on after a run's last epoch (3 of 3; 2 of 5, stopped early): no state for it.
    assert writes == [1, 2, 1, 1, 2]


def test_metric_names_say_their_split_with_any_separator():
    assert [metric_split(n) for n in ("val_acc", "val/acc", "valid-loss", "test/acc", "test_loss", "train/loss",
                                      "training_loss", "loss", "value", "tested", "acc_val")] == \
        ["val", "val", "val", "test", "test", "train", "train", None, None, None, None]


# ---- ensembles: what predict_step returns ----------------------------------------------------

class Probabilities(DebugClassifier):
    """predict_step returns class probabilities, as many users' modules do."""

    def predict_step(self, batch, batch_idx: int = 0) -> torch.Tensor:
        return F.softmax(self(batch[0]), dim=1)


class SlashNames(DebugClassifier):
    """Logs val/loss and val/acc, the names many projects use."""

    def _evaluate(self, batch, prefix: str) -> None:
        inputs, labels = batch
        logits = self(inputs)
        self.log(f"{prefix}/loss", F.cross_entropy(logits, labels), batch_size=len(labels))
        self.log(f"{prefix}/acc", (logits.argmax(1) == labels).float().mean(), batch_size=len(labels))


@pytest.mark.parametrize("model", [DEBUG.model, f"{__name__}.Probabilities"], ids=["logits", "probabilities"])
def test_an_ensemble_of_one_scores_the_models_own_validation_loss(tmp_path, model):
    from finesweep.models.inference import Member, evaluate_ensemble

    run = debug_run(model, epochs=2, metric="val_loss")
    result = fit(run.with_changes(mode="min"), threads=1, checkpoint_path=tmp_path / "model.pt")
    [val] = evaluate_ensemble([Member("only", run, str(tmp_path / "model.pt"))], ("val",))
    assert val.kind == ("probabilities" if "Probabilities" in model else "logits")
    assert val.members["only"]["nll"] == pytest.approx(result.best["val_loss"], abs=1e-5)
    assert val.members["only"]["acc"] == pytest.approx(result.best["val_acc"], abs=1e-6)


def test_the_kind_of_predictions_can_be_given_and_a_wrong_one_is_refused():
    from finesweep.models.inference import NotEnsemblable, kind_of

    probabilities = F.softmax(torch.randn(8, 3), dim=1)
    assert kind_of(probabilities) == "probabilities"
    assert kind_of(torch.log(probabilities)) == "logits"  # log-probabilities: softmax gives them back
    assert kind_of(torch.randn(8, 3)) == "logits"
    assert kind_of(torch.randn(8)) == kind_of(torch.randn(8, 1)) == "regression"
    assert kind_of(probabilities, "logits") == "logits"
    with pytest.raises(NotEnsemblable, match="not class scores"):
        kind_of(torch.randn(8), "probabilities")


# ---- the dry run ---------------------------------------------------------------------------

class BrokenSetup(DebugData):
    def setup(self, stage: str | None = None) -> None:
        raise FileNotFoundError("no such file: /data/missing.csv")


class Encoder(torch.nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        if width % 2:
            raise ValueError(f"width {width} must be even")
        self.width = width


class WithEncoder(DebugClassifier):
    def __init__(self, encoder: Encoder, learning_rate: float = 0.05) -> None:
        super().__init__(learning_rate=learning_rate)
        self.encoder = encoder


class FailsInStep(DebugClassifier):
    def training_step(self, batch, batch_idx: int):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (32x8 and 7x16)")


@pytest.mark.parametrize(("run", "stage", "culprit", "message"), [
    (debug_run(data=f"{__name__}.BrokenSetup"), "setup", ("data",), "FileNotFoundError: no such file"),
    (debug_run(f"{__name__}.WithEncoder", model_args={"encoder": {"class_path": f"{__name__}.Encoder",
                                                                  "init_args": {"width": 3}}}),
     "building the model", ("model", "init_args", "encoder"), "width 3 must be even"),
    (debug_run(f"{__name__}.FailsInStep"), "setup", ("model",), "shapes cannot be multiplied"),
    (debug_run(trainer={"callbacks": [EARLY_STOP, {"class_path": "pytorch_lightning.callbacks.EarlyStopping",
                                                   "init_args": {"monitor": "val/loss"}}]}),
     "setup", ("trainer", "callbacks", 1), "val/loss"),
    (debug_run(data_args={"batch_size": 0}), "setup", ("data",), "batch_size should be a positive integer"),
    (debug_run(metric="val/acc"), "batch", ("metric",), "the module logged: train_loss, val_acc, val_loss"),
], ids=["data_setup", "nested_class", "training_step", "callback", "data_argument", "metric"])
def test_a_dry_run_names_the_part_of_the_config_that_raised(run, stage, culprit, message, tmp_path, monkeypatch):
    from finesweep.models.dry_run import DryRunFailure, dry_run

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DryRunFailure) as raised:
        dry_run(run)
    assert stage in raised.value.stage and raised.value.culprit == culprit
    assert message in raised.value.reason
    assert not any(tmp_path.iterdir()), "a dry run writes nothing"


def test_a_dry_run_trains_one_batch_with_the_runs_callbacks_and_keeps_the_callers_random_state(tmp_path,
                                                                                               monkeypatch):
    from finesweep.models.dry_run import dry_run

    monkeypatch.chdir(tmp_path)
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    result = dry_run(debug_run(f"{__name__}.SlashNames", metric="val/acc", epochs=20,
                               trainer={"callbacks": [{**EARLY_STOP, "init_args": {"monitor": "val/loss"}}, LR_MONITOR],
                                        "limit_train_batches": 4,
                                        "check_val_every_n_epoch": 3}))
    assert {"val/acc", "val/loss", "train_loss"} <= set(result.logged)
    assert result.data_summary and "synthetic" in result.data_summary
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert not any(tmp_path.iterdir())
