"""What every classifier task shares: per-epoch metrics for ``fit``, the optimizer with
warm-up and a separate backbone learning rate, and fine-tuning from an earlier checkpoint.

A task subclasses :class:`Classifier`, builds its layers, then calls :meth:`Classifier.finish_init`;
it lists its backbone blocks from the input side in :meth:`backbone_blocks` (what
``frozen_layers`` counts) and names its final layer in ``classifier_prefix`` (what is
re-initialised when a checkpoint was trained on other labels).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from finesweep.models.data_sources import resolve_path
from torch import nn
from torch.nn import functional as F


class CheckpointMismatch(ValueError):
    """``init_from`` names a checkpoint that does not fit the model being trained."""


def label_ids(labels: Sequence[str | int]) -> torch.Tensor:
    """A stable number per label (digits stay themselves), stored in the checkpoint so a
    fine-tuning run can tell whether the label set changed."""
    return torch.tensor([label if isinstance(label, int) else zlib.crc32(str(label).encode())
                         for label in labels], dtype=torch.int64)


class Classifier(pl.LightningModule):
    """A cross-entropy classifier. ``cfg`` must have learning_rate, optimizer, momentum,
    weight_decay, lr_schedule, label_smoothing, init_from, frozen_layers, backbone_lr_scale,
    warmup_epochs, grad_clip (a config dataclass of models/tasks.py)."""

    classifier_prefix = "head."

    def __init__(self, cfg: Any, *, labels: Sequence[str | int], max_epochs: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.max_epochs = max_epochs
        self.register_buffer("label_ids", label_ids(labels))
        self.epoch_metrics: dict[str, float] = {}
        self._train_loss_sum = torch.zeros(())
        self._train_batches = 0
        self._val_sums = torch.zeros(3)  # loss sum, correct, count
        self.init_report: dict[str, Any] = {}

    # ---- what a task provides

    def backbone_blocks(self) -> list[nn.Module]:
        raise NotImplementedError

    def augment(self, inputs: torch.Tensor) -> torch.Tensor:
        """Training-time augmentation of a batch; identity unless the task overrides it."""
        return inputs

    # ---- fine-tuning

    def finish_init(self) -> None:
        """Load ``init_from`` and freeze the first ``frozen_layers`` backbone blocks."""
        if self.cfg.init_from:
            self.init_report = self.load_initial_weights(self.cfg.init_from)
        blocks = self.backbone_blocks()
        if self.cfg.frozen_layers > len(blocks):
            raise CheckpointMismatch(f"frozen_layers={self.cfg.frozen_layers} but the model has "
                                     f"only {len(blocks)} backbone layers")
        for block in blocks[:self.cfg.frozen_layers]:
            for parameter in block.parameters():
                parameter.requires_grad_(False)

    def load_initial_weights(self, value: str) -> dict[str, Any]:
        path = resolve_path(value)
        if not path.is_file():
            raise CheckpointMismatch(f"init_from {value!r}: no such file (a model.pt of an earlier "
                                     "run, e.g. runs/<name>/retrain/model.pt)")
        # weights_only: a checkpoint is data; unpickling arbitrary objects could run code.
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointMismatch(f"init_from {value!r}: expected a state dict of tensors "
                                     "(finesweep's model.pt)")
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
        for block in self.backbone_blocks()[:self.cfg.frozen_layers]:
            block.eval()

    # ---- training loop

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, labels = batch
        loss = F.cross_entropy(self(self.augment(inputs)), labels,
                               label_smoothing=self.cfg.label_smoothing)
        # Summed here rather than with self.log: epoch means are needed before Lightning
        # reduces its logged values, and avoiding the logger keeps trials cheap.
        self._train_loss_sum += loss.detach().cpu()
        self._train_batches += 1
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.cfg.grad_clip)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        inputs, labels = batch
        logits = self(inputs)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        correct = (logits.argmax(dim=1) == labels).sum()
        self._val_sums += torch.stack([loss.detach().cpu(), correct.cpu().float(),
                                       torch.tensor(float(len(labels)))])

    def on_validation_epoch_end(self) -> None:
        loss, correct, count = self._val_sums.tolist()
        self._val_sums.zero_()
        if count:
            self.epoch_metrics = {"val_loss": loss / count, "val_acc": correct / count}

    def take_train_loss(self) -> float:
        mean = float(self._train_loss_sum) / max(self._train_batches, 1)
        self._train_loss_sum.zero_()
        self._train_batches = 0
        return mean

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The head at ``learning_rate``, the backbone at ``learning_rate * backbone_lr_scale``."""
        head, backbone = [], []
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                (head if name.startswith(self.classifier_prefix) else backbone).append(parameter)
        lr = self.cfg.learning_rate
        groups = [{"params": head, "lr": lr}]
        if backbone:
            groups.append({"params": backbone, "lr": lr * self.cfg.backbone_lr_scale})
        return groups

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        groups = self.parameter_groups()
        if cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=cfg.momentum,
                                        weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        else:
            optimizer = torch.optim.Adam(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        if cfg.lr_schedule == "constant" and not cfg.warmup_epochs:
            return optimizer
        warmup, total, cosine = cfg.warmup_epochs, self.max_epochs, cfg.lr_schedule == "cosine"

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
