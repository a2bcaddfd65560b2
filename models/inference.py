"""Predictions from saved weights: rebuild a run's model and DataModule, load a checkpoint, and
average the predictions of several models (an ensemble).

Works for any LightningModule whose ``predict_step`` returns, per example, class scores
(batch, classes): logits, log-probabilities or probabilities; or one regression output
(batch,) or (batch, 1); on batches whose last element is the target. It says clearly why not
otherwise. Probabilities are told from logits by their rows (non-negative, summing to 1) unless
the caller says which they are (:data:`OUTPUTS`). Knows nothing of the search.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from finesweep.models.run import TrainingRun
from finesweep.models.state_files import WeightsNotLoadable, load_weights
from finesweep.models.training import build, make_trainer, overrides
from torch.nn import functional as F

SPLITS = ("val", "test")


class CheckpointMismatchError(RuntimeError):
    """Saved weights that do not fit the model rebuilt from their config."""


class NotEnsemblable(ValueError):
    """The model's predictions or the data's batches are not of a kind an ensemble can average."""


class UnreadableCheckpoint(ValueError):
    """A file that is not a state dict of tensors: refused without unpickling anything else."""


def read_weights(checkpoint: str | Path) -> Mapping[str, torch.Tensor]:
    """The state dict saved at ``checkpoint``, loaded weights only (nothing in the file runs);
    :class:`UnreadableCheckpoint`, in one line, for anything else."""
    try:
        return load_weights(Path(checkpoint))
    except WeightsNotLoadable as error:
        if error.loaded:
            raise UnreadableCheckpoint(f"{checkpoint}: expected a state dict of tensors "
                                       "(finesweep's model.pt)") from None
        raise UnreadableCheckpoint(f"{checkpoint}: not a model.pt of finesweep's, refused ({error.why})") from None


def load_model(run: TrainingRun, checkpoint: str | Path,
               state: Mapping[str, torch.Tensor] | None = None) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """The run's model with the weights saved at ``checkpoint``, and its DataModule set up.

    The model is set up by a Trainer exactly as in training (``setup`` hooks, so a model that
    builds its layers from the data is complete), with no batch run, then the weights load.
    The file is read first (or ``state``, read from it already): one that is not weights is
    refused before any model is built."""
    state = read_weights(checkpoint) if state is None else state
    model, data = build(run)
    # The run's own Trainer options and callbacks, as in training; no validation batch is run.
    trainer = make_trainer(run, [], overrides={"limit_val_batches": 0})
    trainer.validate(model, datamodule=data, verbose=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = " ".join(str(error).split("\n", 1)[-1].split())
        raise CheckpointMismatchError(
            f"{checkpoint} does not fit the model {run.model['class_path']} that its config builds ({detail}); "
            "was it saved by another version of the model's code?") from None
    return model.eval(), data


def predictions(model: pl.LightningModule, loader: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``predict_step`` outputs and targets (each batch's last element) over a loader."""
    if not overrides(model, "predict_step", pl.LightningModule):
        # Lightning's own predict_step calls forward on the whole batch, targets included.
        raise NotEnsemblable(f"{type(model).__name__} has no predict_step: ensembles need one that returns class "
                             "scores (batch, classes) or one regression output per example (batch,)")
    outputs, targets = [], []
    with torch.no_grad():
        for index, batch in enumerate(loader):
            if not isinstance(batch, (list, tuple)) or len(batch) < 2:
                raise NotEnsemblable("ensembles need batches of (inputs..., target); the DataModule's "
                                     f"loader gives {type(batch).__name__}")
            out = model.predict_step(batch, index)
            if not isinstance(out, torch.Tensor):
                raise NotEnsemblable(f"{type(model).__name__}.predict_step returned {type(out).__name__}; "
                                     "ensembles need a tensor of class scores (batch, classes) or of one "
                                     "regression output per example (batch,)")
            outputs.append(out.detach().float().cpu())
            targets.append(batch[-1].detach().cpu())
    return torch.cat(outputs), torch.cat(targets)


# What predict_step returns: "auto" tells probabilities from logits by their rows.
OUTPUTS = ("auto", "logits", "probabilities", "regression")
CLASSIFICATION = ("logits", "probabilities")


def kind_of(outputs: torch.Tensor, declared: str = "auto") -> str:
    """"logits" (or log-probabilities), "probabilities" or "regression" for ``predict_step``'s
    ``outputs``: ``declared`` when given (and the shape fits it), else read from the outputs."""
    if declared not in OUTPUTS:
        raise ValueError(f"outputs must be one of {', '.join(OUTPUTS)}, but got {declared!r}")
    if outputs.dim() == 2 and outputs.shape[1] > 1:
        if declared == "regression":
            raise NotEnsemblable(f"predict_step returned shape {tuple(outputs.shape)}, not one regression "
                                 "output per example")
        if declared != "auto":
            return declared
        rows = outputs.sum(dim=1)
        probabilities = bool((outputs >= 0).all()) and bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-3))
        return "probabilities" if probabilities else "logits"
    if outputs.dim() == 1 or (outputs.dim() == 2 and outputs.shape[1] == 1):
        if declared in CLASSIFICATION:
            raise NotEnsemblable(f"predict_step returned shape {tuple(outputs.shape)}, not class scores "
                                 "(batch, classes)")
        return "regression"
    raise NotEnsemblable(f"predict_step returned shape {tuple(outputs.shape)}: ensembles need class scores "
                         "(batch, classes) or one regression output per example (batch,)")


def scores(mean_prediction: torch.Tensor, targets: torch.Tensor, kind: str) -> dict[str, float]:
    """acc and nll of averaged probabilities, or mse and mae of averaged regression outputs."""
    if kind in CLASSIFICATION or kind == "classification":
        nll = F.nll_loss(torch.log(mean_prediction.clamp_min(1e-12)), targets.long())
        return {"acc": float((mean_prediction.argmax(dim=1) == targets).float().mean()), "nll": float(nll)}
    prediction, target = mean_prediction.reshape(-1), targets.float().reshape(-1)
    return {"mse": float(F.mse_loss(prediction, target)), "mae": float(F.l1_loss(prediction, target))}


def as_averageable(outputs: torch.Tensor, kind: str) -> torch.Tensor:
    """What is averaged across members: probabilities (softmax of logits; probabilities as they
    are), regression outputs as they are."""
    if kind in ("logits", "classification"):  # (what the first version called class scores)
        return F.softmax(outputs, dim=1)
    return outputs if kind == "probabilities" else outputs.reshape(-1)


@dataclass(frozen=True)
class Member:
    """One model of an ensemble: what rebuilds it and where its weights are."""

    name: str
    run: TrainingRun
    checkpoint: str


@dataclass(frozen=True)
class EnsembleScores:
    split: str
    kind: str
    members: dict[str, dict[str, float]]
    ensemble: dict[str, float]


def evaluate_ensemble(members: Sequence[Member], splits: Sequence[str] = SPLITS,
                      outputs: str = "auto") -> list[EnsembleScores]:
    """Each member's scores and those of the mean of their predictions, per split (the data of
    the first member: members of one sweep share their data). ``outputs`` says what the members'
    ``predict_step`` returns (:data:`OUTPUTS`; "auto" reads it from each member's outputs)."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    # Every member's file is read before the first model is built: a bad one builds nothing.
    states = {m.name: read_weights(m.checkpoint) for m in members}
    loaded: Mapping[str, tuple[pl.LightningModule, pl.LightningDataModule]] = {
        m.name: load_model(m.run, m.checkpoint, states[m.name]) for m in members}
    data = loaded[members[0].name][1]
    results = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, but got {split!r}")
        hook = f"{split}_dataloader"
        if not overrides(data, hook, pl.LightningDataModule):
            if split == "val":
                raise NotEnsemblable(f"{type(data).__name__} has no val_dataloader to score the members on")
            continue  # No held-out test split: the ensemble is scored on validation only.
        loader = getattr(data, hook)()
        averaged, targets, kinds = {}, None, {}
        for name, (model, _) in loaded.items():
            raw, targets = predictions(model, loader)
            kinds[name] = kind_of(raw, outputs)
            averaged[name] = as_averageable(raw, kinds[name])
        if len({kind == "regression" for kind in kinds.values()}) > 1:
            raise NotEnsemblable(f"members predict different kinds of output: {kinds}")
        kind = next(iter(kinds.values()))
        mean = torch.stack(list(averaged.values())).mean(dim=0)
        results.append(EnsembleScores(split, kind, {n: scores(o, targets, kind) for n, o in averaged.items()},
                                      scores(mean, targets, kind)))
    return results
