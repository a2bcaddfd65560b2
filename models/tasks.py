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
class FineTuning:
    """Settings every trainable task shares for starting from an earlier run's weights
    (models/common.py); the task configs below inherit them."""

    # None, not "": an export holds every field and is validated like a spec on reading back.
    init_from: str | None = field(default=None, metadata={
        "help": "model.pt of an earlier run to start from (none: from scratch); the head is "
                "re-initialised when that run had other labels"})
    frozen_layers: int = number_field(0, "backbone blocks frozen, counted from the input", low=0)
    backbone_lr_scale: float = number_field(1.0, "backbone learning rate / head learning rate", low=0.0)
    warmup_epochs: int = number_field(0, "epochs of linear learning-rate warm-up", low=0)
    grad_clip: float = number_field(0.0, "gradient norm clip (0: none)", low=0.0)


@dataclass(frozen=True)
class ImageClassifierConfig(FineTuning):
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
    # Augmentation, training batches only; the defaults (all 0) train on the images as they are.
    aug_shift: int = number_field(0, "random shift of up to this many pixels", low=0, high=3)
    aug_rotation: float = number_field(0.0, "random rotation of up to this many degrees", low=0.0, high=45.0)
    aug_noise: float = number_field(0.0, "std of Gaussian noise added (normalised pixel units)",
                                    low=0.0, high=2.0)


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
    classes: str = field(default="0-9", metadata={
        "help": "digits kept, e.g. 0-4, 5-9 or 1,3,7 (labels stay the digits themselves)"})
    train_per_class: int = number_field(0, "training images kept per digit (0: all): a small "
                                           "target set for fine-tuning", low=0)


@dataclass(frozen=True)
class TextClassifierConfig(FineTuning):
    """Embedding + LSTM/GRU text classifier (models/text_classification.py)."""

    learning_rate: float = number_field(3e-3, "peak learning rate", low=0.0)
    optimizer: str = choice_field("adamw", ("adam", "adamw", "sgd"), "optimizer")
    momentum: float = number_field(0.9, "SGD momentum (sgd only)", low=0.0, high=1.0)
    weight_decay: float = number_field(1e-4, "L2 / decoupled weight decay", low=0.0)
    lr_schedule: str = choice_field("cosine", ("constant", "cosine"), "cosine decays to 0 over max_epochs")
    batch_size: int = number_field(64, "examples per optimizer step", low=1)
    cell: str = choice_field("gru", ("lstm", "gru"), "recurrent cell")
    embedding_dim: int = number_field(64, "token embedding width", low=1)
    hidden_size: int = number_field(128, "recurrent state width (per direction)", low=1)
    layers: int = number_field(1, "stacked recurrent layers", low=1, high=4)
    bidirectional: bool = field(default=True, metadata={"help": "read the text both ways"})
    pooling: str = choice_field("max", ("last", "mean", "max"),
                                "how the per-token states become one vector")
    dropout: float = number_field(0.3, "dropout on embeddings, between layers and before the head",
                                  low=0.0, high=0.95)
    label_smoothing: float = number_field(0.0, "cross-entropy label smoothing", low=0.0, high=0.5)


@dataclass(frozen=True)
class TextDataConfig:
    """Labelled short texts: Debian's fortunes categories (real), or the user's CSV/JSONL."""

    source: str = choice_field("fortunes", ("fortunes", "files"),
                               "fortunes: /usr/share/games/fortunes; files: data.path")
    categories: str = field(default="computers,definitions,politics,songs-poems,startrek,zippy",
                            metadata={"help": "comma-separated fortune categories, one label each"})
    path: str | None = field(default=None, metadata={"help": "CSV (text,label columns) or JSONL "
                                                             "file (source: files)"})
    val_fraction: float = number_field(0.15, "share held out for validation", low=0.05, high=0.5)
    test_fraction: float = number_field(0.15, "share held out for the final test only",
                                        low=0.05, high=0.5)
    split_seed: int = number_field(0, "seed of the train/val/test split")
    min_chars: int = number_field(10, "shorter texts are dropped", low=1)
    max_chars: int = number_field(600, "longer texts are dropped (0: keep all)", low=0)
    max_per_class: int = number_field(0, "texts kept per label before splitting (0: all)", low=0)
    max_tokens: int = number_field(120, "tokens read per text (the rest is cut)", low=1)
    min_freq: int = number_field(2, "training-split count a token needs to enter the vocabulary",
                                 low=1)
    max_vocab: int = number_field(20000, "vocabulary size cap", low=3)


@dataclass(frozen=True)
class SpeechConfig(FineTuning):
    """Log-mel features + GRU/LSTM spoken-word classifier (models/speech_recognition.py)."""

    learning_rate: float = number_field(3e-3, "peak learning rate", low=0.0)
    optimizer: str = choice_field("adamw", ("adam", "adamw", "sgd"), "optimizer")
    momentum: float = number_field(0.9, "SGD momentum (sgd only)", low=0.0, high=1.0)
    weight_decay: float = number_field(1e-4, "L2 / decoupled weight decay", low=0.0)
    lr_schedule: str = choice_field("cosine", ("constant", "cosine"), "cosine decays to 0 over max_epochs")
    batch_size: int = number_field(64, "examples per optimizer step", low=1)
    features: str = choice_field("logmel", ("logmel", "mfcc"), "per-frame features")
    n_mels: int = number_field(40, "mel filters", low=8, high=128)
    cell: str = choice_field("gru", ("lstm", "gru"), "recurrent cell")
    hidden_size: int = number_field(96, "recurrent state width (per direction)", low=1)
    layers: int = number_field(2, "stacked recurrent layers", low=1, high=4)
    bidirectional: bool = field(default=True, metadata={"help": "read the audio both ways"})
    pooling: str = choice_field("mean", ("last", "mean", "max"), "how frames become one vector")
    dropout: float = number_field(0.2, "dropout between layers and before the head",
                                  low=0.0, high=0.95)
    label_smoothing: float = number_field(0.0, "cross-entropy label smoothing", low=0.0, high=0.5)
    # Augmentation, training batches only.
    aug_noise: float = number_field(0.0, "std of white noise added to the waveform "
                                         "(clips are peak-normalised to 1)", low=0.0, high=1.0)
    aug_shift: float = number_field(0.0, "random time shift of up to this many seconds",
                                    low=0.0, high=0.5)
    aug_freq_mask: int = number_field(0, "SpecAugment: widest masked band of mel channels", low=0)
    aug_time_mask: int = number_field(0, "SpecAugment: widest masked run of frames", low=0)


@dataclass(frozen=True)
class SpeechDataConfig:
    """Spoken words: digits synthesised offline with espeak-ng (real audio, built by
    scripts/prepare_data.py), or the user's folder of WAV files with transcripts."""

    source: str = choice_field("espeak_digits", ("espeak_digits", "folder"),
                               "espeak_digits: the built cache; folder: data.path")
    path: str | None = field(default=None, metadata={"help": "folder of WAV files plus "
                                                             "transcripts.csv (file,text), or one "
                                                             "sub-folder per word"})
    noise_snr_db: float = number_field(20.0, "background noise mixed into every clip, as a "
                                             "signal-to-noise ratio in dB (recording noise)", low=-10.0)
    val_fraction: float = number_field(0.15, "share of speakers held out for validation",
                                       low=0.05, high=0.5)
    test_fraction: float = number_field(0.15, "share of speakers held out for the final test only",
                                        low=0.05, high=0.5)
    split_seed: int = number_field(0, "seed of the speaker split and the noise")
    max_per_class: int = number_field(0, "clips kept per word (0: all)", low=0)
    clip_seconds: float = number_field(1.0, "clips are cut or padded to this length", low=0.1, high=10.0)
    words: str | None = field(default=None, metadata={
        "help": "words kept, comma-separated, e.g. zero,one,two (unset: every word)"})
    train_per_class: int = number_field(0, "training clips kept per word (0: all): a small "
                                           "target set for fine-tuning", low=0)


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
    # "module:function" of a light check (no torch) that says why the data cannot be
    # loaded, or returns None; run before a sweep starts.
    data_check: str | None = None

    def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The full training config: the task's defaults overridden by ``values``."""
        return asdict(self.config_class(**values))

    def check_data(self, values: Mapping[str, Any]) -> str | None:
        """Why this task cannot load the data settings ``values`` (what to install or fix),
        or None. Fast and torch-free, so it can run before Ray or any trial starts."""
        if self.data_check is None:
            return None
        import importlib

        module, _, function = self.data_check.partition(":")
        return getattr(importlib.import_module(module), function)(values)

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
        module="finesweep.models.image_classification",
        data_check="finesweep.models.data_sources:check_digits_data",
    ),
    "text_classification": TaskInfo(
        name="text_classification",
        description="embedding + LSTM/GRU on labelled short texts (Debian fortunes or your files)",
        config_class=TextClassifierConfig,
        data_class=TextDataConfig,
        metrics={"val_acc": "max", "val_loss": "min"},
        module="finesweep.models.text_classification",
        data_check="finesweep.models.text_data:check_data",
    ),
    "speech_recognition": TaskInfo(
        name="speech_recognition",
        description="log-mel + GRU/LSTM spoken-word recogniser (espeak-ng digits or your WAVs)",
        config_class=SpeechConfig,
        data_class=SpeechDataConfig,
        metrics={"val_acc": "max", "val_loss": "min"},
        module="finesweep.models.speech_recognition",
        data_check="finesweep.models.speech_data:check_data",
    ),
    "debug": TaskInfo(
        name="debug",
        description="tiny synthetic classifier that can fail on purpose (tests, cluster smoke tests)",
        config_class=DebugConfig,
        data_class=DebugDataConfig,
        metrics={"val_acc": "max", "val_loss": "min"},
        module="finesweep.models.debug",
    ),
}


def get_task(name: str) -> TaskInfo:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
