"""The layout of a run directory: every file and folder a sweep and its commands write there,
named here once. Everything else asks this module for a path instead of spelling it.

    runs/<name>/
      spec.yaml  study.db  data.txt  .finesweep.lock  ray_session.json
      best.yaml  best_single.yaml  top/rank_NN.yaml
      trials/trial_NNNN/{model.pt, error.txt, training_state.ckpt while it runs}
      tensorboard/trial_NNNN[/running]
      ray/tune/ray_<trial id>/          Ray Tune's own state
      retrain/{model.pt, result.yaml}   robust.yaml  robust.md  ensemble.yaml  report.html  report/
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

SPEC_COPY = "spec.yaml"
STUDY_FILE = "study.db"
DATA_SUMMARY = "data.txt"
LOCK_FILE = ".finesweep.lock"
SESSION_FILE = "ray_session.json"
BEST_FILE = "best.yaml"
# Where a plain export puts the single best trial while best.yaml holds the robust choice.
SINGLE_BEST_FILE = "best_single.yaml"
TOP_DIR = "top"
# The Pareto front of a sweep of several objectives, one export per trial on it.
FRONT_DIR = "pareto"
TRIALS_DIR = "trials"
TENSORBOARD_DIR = "tensorboard"
# The sub-run of a trial's TensorBoard run that holds its start record while it runs.
LIVE_RUN = "running"
RAY_DIR = "ray"
TUNE_EXPERIMENT = "tune"
CHECKPOINT_FILE = "model.pt"
ERROR_FILE = "error.txt"
# A running trial's full training state after its last finished epoch (owner-only), which a
# retry or a resumed sweep's re-run goes on from; removed when the trial ends.
STATE_FILE = "training_state.ckpt"
RETRAIN_DIR = "retrain"
RESULT_FILE = "result.yaml"
ENSEMBLE_FILE = "ensemble.yaml"
ROBUST_FILE = "robust.yaml"
ROBUST_TABLE = "robust.md"
REPORT_FILE = "report.html"
PLOT_DIR = "report"


def default_run_dir(name: str) -> Path:
    """Where a sweep named ``name`` runs unless told otherwise (``--out``)."""
    return Path("runs") / name


def trial_name(number: int) -> str:
    return f"trial_{number:04d}"


def trial_dir(run_dir: str | Path, number: int) -> Path:
    return Path(run_dir) / TRIALS_DIR / trial_name(number)


def checkpoint_path(run_dir: str | Path, number: int) -> Path:
    return trial_dir(run_dir, number) / CHECKPOINT_FILE


def error_path(run_dir: str | Path, number: int) -> Path:
    return trial_dir(run_dir, number) / ERROR_FILE


def tensorboard_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / TENSORBOARD_DIR


def tensorboard_dir(run_dir: str | Path, number: int) -> Path:
    return tensorboard_root(run_dir) / trial_name(number)


def ray_storage(run_dir: str | Path) -> Path:
    return Path(run_dir) / RAY_DIR


def tune_dir(run_dir: str | Path) -> Path:
    return ray_storage(run_dir) / TUNE_EXPERIMENT


def ray_trial_name(trial_id: str) -> str:
    return f"ray_{trial_id}"


def ray_error_path(run_dir: str | Path, trial_id: str) -> Path:
    return tune_dir(run_dir) / ray_trial_name(trial_id) / ERROR_FILE


def rank_path(run_dir: str | Path, rank: int) -> Path:
    return Path(run_dir) / TOP_DIR / f"rank_{rank:02d}.yaml"


def front_path(run_dir: str | Path, rank: int) -> Path:
    """A Pareto trial's export, numbered by the first objective, best first."""
    return Path(run_dir) / FRONT_DIR / f"rank_{rank:02d}.yaml"


def own_folder(path: Path) -> Path:
    """``path``, a folder a command writes into inside a run directory, refused (OSError) when
    it is a symbolic link: files written there would land wherever it points."""
    if path.is_symlink():
        raise OSError(errno.ELOOP, "a symbolic link where a folder of the run belongs", str(path))
    return path


def write_atomically(path: Path, text: str, *, private: bool = False) -> None:
    """Write ``text`` to ``path`` whole or not at all: a reader, a killed process or a full
    disk never leaves half a file, nor the folder this call created for it. ``private``
    files (the spec copy, which may name a database and its user) are owner-only."""
    created = [] if path.parent.exists() else [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        # A new file, never one already there: a `.partial` planted as a symbolic link would
        # otherwise have its target overwritten.
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600 if private else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
