"""Predictions from saved weights: rebuild a task's model from its config, load a checkpoint,
and average class probabilities over several models (an ensemble).

Knows nothing of the search: callers pass the task name, the full training config and the
data settings a model was trained with, and the path of its weights (a plain state dict).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from finesweep.models.tasks import get_task
from finesweep.models.training import DataBundle
from torch.nn import functional as F

SPLITS = ("train", "val", "test")


class CheckpointMismatchError(RuntimeError):
    """Saved weights that do not fit the model rebuilt from their config."""


def load_bundle(task: str, data: Mapping[str, Any]) -> DataBundle:
    """The task's data with the given settings (the same split as in training)."""
    return importlib.import_module(get_task(task).module).load_data(dict(data))


def load_model(task: str, config: Mapping[str, Any], bundle: DataBundle, checkpoint: str | Path) -> torch.nn.Module:
    """The task's model built from ``config``, with the weights saved at ``checkpoint``."""
    impl = importlib.import_module(get_task(task).module)
    # max_epochs only shapes the learning-rate schedule, which inference never uses.
    model = impl.build_model(dict(config), bundle, 1)
    state = torch.load(Path(checkpoint), map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = " ".join(str(error).split("\n", 1)[-1].split())
        raise CheckpointMismatchError(
            f"{checkpoint} does not fit the {task} model that its config builds ({detail}); "
            "was it saved by another version of the task's code?") from None
    return model.eval()


def predict_proba(model: torch.nn.Module, tensors: Sequence[torch.Tensor], batch_size: int = 512) -> torch.Tensor:
    """Class probabilities (N, classes) for a split whose last tensor holds the labels."""
    inputs = tensors[:-1]
    chunks = []
    with torch.no_grad():
        for start in range(0, len(tensors[-1]), batch_size):
            logits = model(*(t[start:start + batch_size] for t in inputs))
            if logits.dim() != 2:
                raise ValueError(f"ensembling needs class logits of shape (batch, classes), "
                                 f"but the model returned shape {tuple(logits.shape)}")
            chunks.append(F.softmax(logits.float(), dim=1))
    return torch.cat(chunks)


def scores(probabilities: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy and negative log-likelihood of predicted probabilities."""
    nll = F.nll_loss(torch.log(probabilities.clamp_min(1e-12)), labels)
    return {"acc": float((probabilities.argmax(dim=1) == labels).float().mean()), "nll": float(nll)}


@dataclass(frozen=True)
class Member:
    """One model of an ensemble: what rebuilds it and where its weights are."""

    name: str
    config: Mapping[str, Any]
    checkpoint: str


@dataclass(frozen=True)
class EnsembleScores:
    split: str
    members: dict[str, dict[str, float]]
    ensemble: dict[str, float]


def evaluate_ensemble(task: str, data: Mapping[str, Any], members: Sequence[Member],
                      splits: Sequence[str] = ("val", "test")) -> list[EnsembleScores]:
    """Each member's scores and those of the mean of their probabilities, per split."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    bundle = load_bundle(task, data)
    models = {m.name: load_model(task, m.config, bundle, m.checkpoint) for m in members}
    results = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, but got {split!r}")
        tensors = getattr(bundle, split)
        labels = tensors[-1]
        probabilities = {name: predict_proba(model, tensors) for name, model in models.items()}
        mean = torch.stack(list(probabilities.values())).mean(dim=0)
        results.append(EnsembleScores(split, {n: scores(p, labels) for n, p in probabilities.items()},
                                      scores(mean, labels)))
    return results
