"""What every built-in classifier task shares, as plain Lightning classes.

:class:`Classifier` is an ordinary ``LightningModule``: it logs ``train_loss``, ``val_loss``,
``val_acc``, ``test_loss`` and ``test_acc`` with ``self.log``, builds the optimizer with warm-up
and a separate backbone learning rate, and fine-tunes from an earlier checkpoint. Its layers
depend on the data (classes, vocabulary, image size), which the matching
:class:`TensorDataModule` describes in ``info`` once set up; the module reads it in ``setup``,
so both are built from their own ``init_args`` alone, as LightningCLI builds them.

A task subclasses :class:`Classifier`, builds its layers in :meth:`Classifier.build`, lists its
backbone blocks from the input side in :meth:`backbone_blocks` (what ``frozen_layers`` counts)
and names its final layer in ``classifier_prefix`` (what is re-initialised when a checkpoint
was trained on other labels).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import pytorch_lightning as pl
import torch
from finesweep.models.components import Range
from finesweep.models.data_sources import resolve_path
from finesweep.models.state_files import WeightsNotLoadable, load_weights
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

NonNegative = Annotated[float, Range(0.0)]
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["constant", "cosine"]


class CheckpointMismatch(ValueError):
    """``init_from`` names a checkpoint that does not fit the model being trained."""


def label_ids(labels: Sequence[str | int]) -> torch.Tensor:
    """A stable number per label (digits stay themselves), stored in the checkpoint so a
    fine-tuning run can tell whether the label set changed."""
    return torch.tensor([label if isinstance(label, int) else zlib.crc32(str(label).encode())
                         for label in labels], dtype=torch.int64)


@dataclass(frozen=True)
class Splits:
    """A task's data as in-memory tensors (inputs..., labels) per split."""

    train: tuple[torch.Tensor, ...]
    val: tuple[torch.Tensor, ...]
    test: tuple[torch.Tensor, ...]
    # What the model needs to know of the data (classes, shapes, vocabulary).
    info: Mapping[str, Any] = field(default_factory=dict)
    # One line for the user: where the data came from and the split sizes.
    summary: str = ""


class EpochShuffle(torch.utils.data.Sampler):
    """A shuffled order that depends only on the run's seed and the epoch (Lightning calls
    ``set_epoch``): a trial and its retraining see the same batches, and a run resumed after
    epoch k goes on with epoch k+1's order instead of starting the sequence again."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):  # noqa: ANN204 - a sampler yields indices
        generator = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class TensorDataModule(pl.LightningDataModule):
    """A DataModule over tensors a subclass builds in :meth:`load_splits` (cached per process
    there, so a reused trial worker builds them once for the whole sweep)."""

    def __init__(self, batch_size: int = 64, eval_batch_size: int = 512) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.splits: Splits | None = None

    def load_splits(self) -> Splits:
        raise NotImplementedError

    def check_inputs(self) -> None:
        """Read what the user's settings point at and raise if it cannot be trained on.
        finesweep calls this once before a sweep starts (see :func:`models.training.check_inputs`);
        the built-in corpora are installed and checked by the set-up script, so only a
        subclass reading the user's own files needs to override it."""

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = self.load_splits()

    @property
    def info(self) -> Mapping[str, Any]:
        self.setup()
        return self.splits.info

    def summary(self) -> str:
        self.setup()
        sizes = ", ".join(f"{name} {len(getattr(self.splits, name)[-1])}" for name in ("train", "val", "test"))
        return f"{self.splits.summary}; {sizes}" if self.splits.summary else sizes

    def train_dataloader(self) -> DataLoader:
        dataset = TensorDataset(*self.splits.train)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=EpochShuffle(len(dataset), torch.initial_seed()))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(*self.splits.val), batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(*self.splits.test), batch_size=self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


class Classifier(pl.LightningModule):
    """A cross-entropy classifier with the optimizer, schedule and fine-tuning settings every
    built-in task shares; a task adds its architecture's arguments and :meth:`build`."""

    classifier_prefix = "head."

    def __init__(
        self,
        learning_rate: Annotated[float, Range(0.0)] = 1e-3,
        optimizer: Optimizer = "adam",
        momentum: Annotated[float, Range(0.0, 1.0)] = 0.9,
        weight_decay: NonNegative = 0.0,
        lr_schedule: Schedule = "cosine",
        label_smoothing: Annotated[float, Range(0.0, 0.5)] = 0.0,
        init_from: str | None = None,
        frozen_layers: Annotated[int, Range(0)] = 0,
        backbone_lr_scale: NonNegative = 1.0,
        warmup_epochs: Annotated[int, Range(0)] = 0,
        grad_clip: NonNegative = 0.0,
    ) -> None:
        """
        Args:
            learning_rate: peak learning rate (of the head; the backbone's is scaled)
            optimizer: adam, adamw or sgd
            momentum: SGD momentum (sgd only)
            weight_decay: L2 / decoupled weight decay
            lr_schedule: cosine decays to 0 over the epochs
            label_smoothing: cross-entropy label smoothing
            init_from: model.pt of an earlier run to start from (none: from scratch); the head is
                re-initialised when that run had other labels
            frozen_layers: backbone blocks frozen, counted from the input
            backbone_lr_scale: backbone learning rate / head learning rate
            warmup_epochs: epochs of linear learning-rate warm-up
            grad_clip: gradient norm clip (0: none)
        """
        super().__init__()
        self.learning_rate, self.optimizer_name, self.momentum = learning_rate, optimizer, momentum
        self.weight_decay, self.lr_schedule, self.label_smoothing = weight_decay, lr_schedule, label_smoothing
        self.init_from, self.frozen_layers = init_from, frozen_layers
        self.backbone_lr_scale, self.warmup_epochs, self.grad_clip = backbone_lr_scale, warmup_epochs, grad_clip
        self.init_report: dict[str, Any] = {}
        self.built = False

    # ---- what a task provides

    def build(self, info: Mapping[str, Any]) -> None:
        """Create the layers for data described by ``info`` (the DataModule's)."""
        raise NotImplementedError

    def backbone_blocks(self) -> list[nn.Module]:
        raise NotImplementedError

    def augment(self, inputs: torch.Tensor) -> torch.Tensor:
        """Training-time augmentation of a batch; identity unless the task overrides it."""
        return inputs

    # ---- building from the data

    def setup(self, stage: str) -> None:
        if self.built:
            return
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        info = getattr(data, "info", None)
        if info is None:
            raise TypeError(f"{type(self).__name__} learns its input and label sizes from its DataModule's "
                            "`info`: train it with the task's DataModule (trainer.fit(model, datamodule=...))")
        self.build_for(info)

    def build_for(self, info: Mapping[str, Any]) -> None:
        """Build the layers for ``info``, then load ``init_from`` and freeze blocks."""
        labels = list(info["labels"])
        self.register_buffer("label_ids", label_ids(labels))
        self.build(info)
        self.built = True
        self.finish_init()

    # ---- fine-tuning

    def check_inputs(self, datamodule: Any) -> None:
        """Load ``init_from`` into a model built for ``datamodule`` (weights only) so a missing,
        unreadable or ill-fitting checkpoint stops the sweep before any trial starts."""
        if self.init_from:
            self.build_for(datamodule.info)

    def finish_init(self) -> None:
        """Load ``init_from`` and freeze the first ``frozen_layers`` backbone blocks."""
        if self.init_from:
            self.init_report = self.load_initial_weights(self.init_from)
        blocks = self.backbone_blocks()
        if self.frozen_layers > len(blocks):
            raise CheckpointMismatch(f"frozen_layers={self.frozen_layers} but the model has "
                                     f"only {len(blocks)} backbone layers")
        for block in blocks[:self.frozen_layers]:
            for parameter in block.parameters():
                parameter.requires_grad_(False)

    def load_initial_weights(self, value: str) -> dict[str, Any]:
        path = resolve_path(value)
        if not path.is_file():
            raise CheckpointMismatch(f"init_from {value!r}: no such file (a model.pt of an earlier "
                                     "run, e.g. runs/<name>/retrain/model.pt)")
        try:
            state = load_weights(path)
        except WeightsNotLoadable as error:
            if error.loaded:
                raise CheckpointMismatch(f"init_from {value!r}: expected a state dict of tensors "
                                         "(finesweep's model.pt)") from None
            raise CheckpointMismatch(f"init_from {value!r}: cannot be loaded as weights only ({error.why})") from None
        own = self.state_dict()
        same_labels = torch.equal(state.get("label_ids", torch.empty(0)), own["label_ids"])
        skipped = [k for k in state if k.startswith(self.classifier_prefix) and not same_labels]
        # label_ids names the classes, it is not a weight: a new label set may have another size.
        mismatched = [k for k in state if k in own and k not in skipped and k != "label_ids"
                      and state[k].shape != own[k].shape]
        if mismatched:
            raise CheckpointMismatch(
                f"init_from {value!r}: {len(mismatched)} weights differ in shape from this model, "
                f"e.g. {mismatched[0]}: checkpoint {tuple(state[mismatched[0]].shape)}, model "
                f"{tuple(own[mismatched[0]].shape)}; fix the architecture settings to the checkpoint's")
        loaded = {k: v for k, v in state.items() if k in own and k not in skipped and k != "label_ids"}
        missing = [k for k in own if k not in loaded and k != "label_ids"
                   and not k.startswith(self.classifier_prefix)]
        if missing:
            raise CheckpointMismatch(f"init_from {value!r}: the checkpoint lacks {len(missing)} "
                                     f"backbone weights of this model, e.g. {missing[0]}")
        self.load_state_dict(loaded, strict=False)
        return {"loaded": len(loaded), "head_reinitialised": not same_labels}

    def on_train_epoch_start(self) -> None:
        # Frozen blocks keep their normalisation statistics too, not only their weights.
        for block in self.backbone_blocks()[:self.frozen_layers]:
            block.eval()

    # ---- training loop

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        *inputs, labels = batch
        loss = F.cross_entropy(self(*(self.augment(x) for x in inputs)), labels,
                               label_smoothing=self.label_smoothing)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.grad_clip)

    def _evaluate(self, batch: Sequence[torch.Tensor], prefix: str) -> None:
        *inputs, labels = batch
        logits = self(*inputs)
        # Batch-size weighted means over the epoch: the same numbers as one pass over the split.
        self.log(f"{prefix}_loss", F.cross_entropy(logits, labels), on_epoch=True, batch_size=len(labels))
        self.log(f"{prefix}_acc", (logits.argmax(dim=1) == labels).float().mean(), on_epoch=True,
                 batch_size=len(labels))

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Sequence[torch.Tensor], batch_idx: int = 0) -> torch.Tensor:
        """Class scores (logits) of a batch; its last tensor, the labels, is not used."""
        *inputs, _ = batch
        return self(*inputs)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The head at ``learning_rate``, the backbone at ``learning_rate * backbone_lr_scale``."""
        head, backbone = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                (head if name.startswith(self.classifier_prefix) else backbone).append(parameter)
        groups = [{"params": head, "lr": self.learning_rate}]
        if backbone:
            groups.append({"params": backbone, "lr": self.learning_rate * self.backbone_lr_scale})
        return groups

    def configure_optimizers(self) -> Any:
        groups, lr = self.parameter_groups(), self.learning_rate
        if self.optimizer_name == "sgd":
            optimizer = torch.optim.SGD(groups, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay)
        elif self.optimizer_name == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=self.weight_decay)
        if self.lr_schedule == "constant" and not self.warmup_epochs:
            return optimizer
        warmup, cosine = self.warmup_epochs, self.lr_schedule == "cosine"
        total = max(1, int(self.trainer.max_epochs or 1))

        def factor(epoch: int) -> float:
            # Linear warm-up over `warmup` epochs, then constant or a cosine decay to 0.
            if epoch < warmup:
                return (epoch + 1) / (warmup + 1)
            if not cosine:
                return 1.0
            progress = (epoch - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": schedule}
