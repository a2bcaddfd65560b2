"""Lightning callbacks finesweep offers to users' runs (opt-in, in ``trainer.callbacks``).

:class:`ModelCost` logs what deployment trades accuracy against, so an objective or a
constraint of a sweep can name it like any value the module logs:

.. code-block:: yaml

    trainer:
      callbacks: [{class_path: finesweep.callbacks.ModelCost}]
    objectives: {val_acc: max, latency_ms: min}
    constraints: {n_params: {max: 100000}}
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch


class ModelCost(pl.Callback):
    """Log, with every validation epoch, ``n_params`` (the module's parameters),
    ``latency_ms`` (the mean wall time of one validation step, the module's forward pass on a
    validation batch with its loss and metrics, on the trial's device; CUDA synchronised; the
    first batch of the epoch left out as warm-up when there are more) and ``peak_memory_mb``
    (on CUDA: the most memory allocated on the device during the epoch's validation steps; on
    the CPU, where torch keeps no such count: the parameters' and buffers' size).

    Args:
        prefix: put before each name (``prefix: "cost/"`` logs ``cost/n_params``)
        trainable_only: count only the parameters that require gradients
    """

    def __init__(self, prefix: str = "", trainable_only: bool = False) -> None:
        self.prefix, self.trainable_only = prefix, trainable_only
        self._times: list[float] = []
        self._started = 0.0

    def _cuda(self, module: pl.LightningModule) -> bool:
        return module.device.type == "cuda"

    def on_validation_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._times = []
        if self._cuda(module):
            torch.cuda.reset_peak_memory_stats(module.device)

    def on_validation_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._cuda(module):
            torch.cuda.synchronize(module.device)
        self._started = time.perf_counter()

    def on_validation_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._cuda(module):
            torch.cuda.synchronize(module.device)
        self._times.append(time.perf_counter() - self._started)

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        params = sum(p.numel() for p in module.parameters() if p.requires_grad or not self.trainable_only)
        timed = self._times[1:] if len(self._times) > 1 else self._times
        if self._cuda(module):
            memory = torch.cuda.max_memory_allocated(module.device)
        else:
            memory = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
        values = {"n_params": float(params), "peak_memory_mb": memory / 2**20}
        if timed:
            values["latency_ms"] = 1000.0 * sum(timed) / len(timed)
        for name, value in values.items():
            module.log(self.prefix + name, value, on_step=False, on_epoch=True, batch_size=1)
