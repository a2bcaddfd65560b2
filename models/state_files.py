"""Files a run writes as it trains: best weights and the training state, whole or not at all."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import pytorch_lightning as pl
import torch
from finesweep.models.run import staging_folder


def save_weights(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Write a state dict whole or not at all. torch.save on a full disk reports a bare
    RuntimeError and leaves a cut-short file; serialised in memory first, the write to disk
    raises the system's own error (ENOSPC), and a file half-written is never left in place."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    partial = path.with_name(path.name + ".partial")
    try:
        partial.unlink(missing_ok=True)  # Never write through a link planted in its place.
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644), "wb") as file:
            file.write(buffer.getbuffer())
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise


class WeightsNotLoadable(ValueError):
    """A weights file refused: ``why`` it could not be loaded, or (``loaded``) that it held
    something other than a state dict of tensors."""

    def __init__(self, why: str, loaded: bool) -> None:
        super().__init__(why)
        self.why, self.loaded = why, loaded


def load_weights(path: Path) -> Mapping[str, torch.Tensor]:
    """The state dict saved at ``path``, loaded weights only: a checkpoint is data, and
    unpickling arbitrary objects could run code. :class:`WeightsNotLoadable` for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, EOFError, RuntimeError, ...
        if isinstance(error, pickle.UnpicklingError):
            why = "it holds Python objects besides tensors, and unpickling them could run code"
        elif isinstance(error, EOFError):
            why = "the file is empty or cut short"
        else:
            why = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
        raise WeightsNotLoadable(why, loaded=False) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsNotLoadable("not a state dict of tensors", loaded=True)
    return state


def save_private_checkpoint(trainer: pl.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to ``path``, owner-only and whole or not at all: written in a
    private folder beside it (Lightning writes world-readable files), then moved into place. The
    folder is made once and kept for the next epoch's write; :func:`discard_checkpoint` removes
    both."""
    staging = staging_folder(path)
    # Every rank of a multi-worker run takes part in save_checkpoint (a collective); rank 0 writes.
    if trainer.is_global_zero and not staging.is_dir():
        staging.mkdir(mode=0o700)
    partial = staging / path.name
    trainer.save_checkpoint(partial)
    if not trainer.is_global_zero:
        return
    os.chmod(partial, 0o600)
    os.replace(partial, path)


def discard_checkpoint(path: Path) -> None:
    """Remove a checkpoint written by :func:`save_private_checkpoint` and its staging folder."""
    path.unlink(missing_ok=True)
    staging = staging_folder(path)
    with contextlib.suppress(FileNotFoundError):
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
