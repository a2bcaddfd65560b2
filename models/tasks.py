"""The built-in tasks: short names for a model class and a DataModule class.

Every task is an ordinary ``LightningModule`` + ``LightningDataModule`` pair, addressed by class
path like a user's own model; ``task: image_classification`` in a spec is short for naming both.
This module stays light (no torch, no Lightning), so listing the tasks costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

_MODELS = "finesweep.models"


@dataclass(frozen=True)
class TaskAlias:
    name: str
    description: str
    model: str  # class path of the LightningModule
    data: str  # class path of the LightningDataModule
    # Metric name -> the direction in which it improves: what the model logs every validation.
    metrics: Mapping[str, str] = field(default_factory=lambda: {"val_acc": "max", "val_loss": "min"})
    # Data argument -> model argument given the same value (LightningCLI's link_arguments):
    # for settings both classes need, such as the debug task's input width.
    links: Mapping[str, str] = field(default_factory=dict)


TASKS: dict[str, TaskAlias] = {
    "image_classification": TaskAlias(
        "image_classification", "CNN on 8x8 handwritten digits (scikit-learn's, real)",
        f"{_MODELS}.image_classification.ImageClassifier", f"{_MODELS}.image_classification.DigitsData"),
    "text_classification": TaskAlias(
        "text_classification", "embedding + LSTM/GRU on labelled short texts (Debian fortunes or your files)",
        f"{_MODELS}.text_classification.TextClassifier", f"{_MODELS}.text_classification.TextData"),
    "speech_recognition": TaskAlias(
        "speech_recognition", "log-mel + GRU/LSTM spoken-word recogniser (espeak-ng digits or your WAVs)",
        f"{_MODELS}.speech_recognition.SpeechClassifier", f"{_MODELS}.speech_recognition.SpeechData"),
    "debug": TaskAlias(
        "debug", "tiny classifier on synthetic blobs that fails on request (smoke tests)",
        f"{_MODELS}.debug.DebugClassifier", f"{_MODELS}.debug.DebugData", links={"features": "features"}),
}

# What the built-in models log, by class path, so a spec naming them by class path gets the
# same up-front metric check as one naming the task.
KNOWN_METRICS: dict[str, Mapping[str, str]] = {alias.model: alias.metrics for alias in TASKS.values()}


def get_task(name: str) -> TaskAlias:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; expected one of {', '.join(sorted(TASKS))}") from None
