"""The task registry: what each task trains, which settings it takes and which metrics it reports.

This module is deliberately light (no torch, no Lightning) so a spec can be validated in
milliseconds; the heavy module named by ``TaskInfo.module`` is imported only to train.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def choice_field(default: str, choices: tuple[str, ...], help: str) -> Any:
    return field(default=default, metadata={"choices": choices, "help": help})


def number_field(default: float | int, help: str, *, low: float | None = None,
                 high: float | None = None) -> Any:
    return field(default=default, metadata={"low": low, "high": high, "help": help})


@dataclass(frozen=True)
class ImageClassifierConfig:
    """Every setting of the CNN image classifier; a spec searches or fixes any of them."""

    learning_rate: float = number_field(1e-3, "peak learning rate", low=0.0)
    optimizer: str = choice_field("adam", ("adam", "adamw", "sgd"), "optimizer")
    momentum: float = number_field(0.9, "SGD momentum (sgd only)", low=0.0, high=1.0)
    weight_decay: float = number_field(0.0, "L2 / decoupled weight decay", low=0.0)
    lr_schedule: str = choice_field("cosine", ("constant", "cosine"),
                                    "cosine decays to 0 over max_epochs")
    batch_size: int = number_field(64, "examples per optimizer step", low=1)
    conv_layers: int = number_field(2, "convolution blocks", low=1, high=6)
    channels: int = number_field(32, "width of the first block; doubles per block", low=1)
    kernel_size: int = number_field(3, "odd convolution kernel size", low=1, high=7)
    normalization: str = choice_field("batch", ("none", "batch", "group"),
                                      "normalization after each convolution")
    activation: str = choice_field("relu", ("relu", "gelu", "silu", "tanh"), "non-linearity")
    hidden_units: int = number_field(128, "width of the dense layer before the head", low=1)
    dropout: float = number_field(0.1, "dropout before the head", low=0.0, high=0.95)
    label_smoothing: float = number_field(0.0, "cross-entropy label smoothing", low=0.0, high=0.5)


@dataclass(frozen=True)
class DigitsDataConfig:
    """scikit-learn's 8x8 handwritten digits (1,797 real images; ships with the package)."""

    dataset: str = choice_field("digits", ("digits",), "bundled dataset name")
    val_fraction: float = number_field(0.2, "share of images held out for validation",
                                       low=0.05, high=0.5)
    test_fraction: float = number_field(0.2, "share held out for the final test only",
                                        low=0.05, high=0.5)
    # A fixed split seed keeps val/test identical across trials and retraining, so trial
    # metrics are comparable and the test split never leaks into the search.
    split_seed: int = number_field(0, "seed of the train/val/test split")


@dataclass(frozen=True)
class DebugConfig:
    """A tiny classifier that trains in milliseconds and can fail on purpose: finesweep's
    BoringModel, for smoke-testing a cluster and for the failure tests."""

    learning_rate: float = number_field(0.05, "learning rate", low=0.0)
    hidden_units: int = number_field(16, "hidden layer width", low=1)
    batch_size: int = number_field(32, "examples per step", low=1)
    fail_mode: str = choice_field("none", ("none", "raise", "nan", "hang", "oom"),
                                  "what goes wrong at fail_at_epoch")
    fail_at_epoch: int = number_field(1, "the epoch in which fail_mode strikes", low=1)
    # Lets a test keep trials running long enough to kill the driver mid-trial.
    epoch_seconds: float = number_field(0.0, "extra seconds each epoch sleeps", low=0.0)


@dataclass(frozen=True)
class DebugDataConfig:
    """Two Gaussian blobs (synthetic)."""

    samples: int = number_field(256, "examples in all splits together", low=30)
    features: int = number_field(8, "input dimensions", low=1)
    split_seed: int = number_field(0, "seed of the data and its split")


@dataclass(frozen=True)
class TaskInfo:
    name: str
    description: str
    config_class: type
    data_class: type
    # Metric name -> the direction in which it improves.
    metrics: Mapping[str, str]
    module: str

    def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The full training config: the task's defaults overridden by ``values``."""
        return asdict(self.config_class(**values))

    def config_fields(self) -> dict[str, Any]:
        return {f.name: f for f in fields(self.config_class)}

    def data_fields(self) -> dict[str, Any]:
        return {f.name: f for f in fields(self.data_class)}


TASKS: dict[str, TaskInfo] = {
    "image_classification": TaskInfo(
        name="image_classification",
        description="CNN on 8x8 handwritten digits",
        config_class=ImageClassifierConfig,
        data_class=DigitsDataConfig,
        metrics={"val_acc": "max", "val_loss": "min"},
        module="models.image_classification",
    ),
    "debug": TaskInfo(
        name="debug",
        description="tiny synthetic classifier that can fail on purpose (tests, cluster smoke tests)",
        config_class=DebugConfig,
        data_class=DebugDataConfig,
        metrics={"val_acc": "max", "val_loss": "min"},
        module="models.debug",
    ),
}


def get_task(name: str) -> TaskInfo:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
