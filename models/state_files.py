"""Files a run writes as it trains: best weights and the training state, whole or not at all."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

import pytorch_lightning as pl
import torch
from finesweep.models.run import staging_folder


def save_weights(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Write a state dict whole or not at all. torch.save on a full disk reports a bare
    RuntimeError and leaves a cut-short file; serialised in memory first, the write to disk
    raises the system's own error (ENOSPC), and a file half-written is never left in place."""
    import io

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
