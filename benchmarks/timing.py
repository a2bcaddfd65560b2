"""Per-trial timings for the overhead benchmarks, taken by a Lightning callback that a spec adds
as a user would (``trainer.callbacks``); finesweep itself records no benchmark timing.

    trainer:
      callbacks:
        - class_path: benchmarks.timing.TrialTiming
          init_args: {folder: /tmp/timings}

Each run writes one JSON file into ``folder``: the process it trained in (``pid``, the value of
Ray Tune's own ``pid`` result field for a trial, as Tune's function trainables run in their
worker process) and thread, the wall-clock time of its first training batch (where per-trial
overhead ends) and the time its last epoch ended (training and validation done; finesweep then
keeps that epoch's weights and reports it). Tune's ``timestamp`` field has whole seconds and the
sweep keeps no Tune result files (its per-trial loggers are off), so the times are taken here.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class TrialTiming(pl.Callback):
    """Records when a run took its first training step and when its last epoch ended."""

    def __init__(self, folder: str | None = None) -> None:
        """
        Args:
            folder: where each run writes its timings (one JSON file per run); without it they
                stay in ``record`` (a callback object given to an in-process ``fit``)
        """
        self.folder = Path(folder) if folder is not None else None
        self.record: dict[str, Any] = {}
        self.name = f"{os.getpid()}-{uuid.uuid4().hex}.json"

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if "first_step_at" not in self.record:
            self.record.update(pid=os.getpid(), thread=threading.get_ident(), first_step_at=time.time())

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # Written every epoch: a trial its scheduler stops (by raising from the report) keeps its last.
        self.record["ended_at"] = time.time()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            staged = self.folder / f"{self.name}.tmp"
            staged.write_text(json.dumps(self.record), encoding="utf-8")
            os.replace(staged, self.folder / self.name)


def callback_entry(folder: Path) -> dict[str, Any]:
    """The ``trainer.callbacks`` item that adds :class:`TrialTiming` writing into ``folder``."""
    return {"class_path": f"{__name__}.TrialTiming", "init_args": {"folder": str(folder)}}


def with_callback(run: Any, callback: pl.Callback) -> Any:
    """``run`` (a TrainingRun) with ``callback`` added to its Trainer's callbacks."""
    given = run.trainer.get("callbacks") or []
    return run.with_changes(trainer={**run.trainer, "callbacks": [*given, callback]})


def with_timing(spec_text: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A spec (as parsed YAML) whose trials also record their timings into ``folder``."""
    trainer = dict(spec_text.get("trainer") or {})
    given = trainer.get("callbacks") or []
    trainer["callbacks"] = [*(given if isinstance(given, list) else [given]), callback_entry(folder)]
    return {**spec_text, "trainer": trainer}


def read_timings(folder: Path, drivers: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """Every run's record in ``folder`` that reached the end of an epoch (``worker`` is its pid).

    A sweep's dry run trains one batch in the driver with the spec's callbacks, so it leaves a
    record too: those written by the processes ``drivers`` are left out."""
    skip = set(drivers)
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("pid") not in skip:
            records.append({"worker": record.get("pid"), **record})
    return records
