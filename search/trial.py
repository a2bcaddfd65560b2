"""The trial side: what runs inside a trial worker. No Optuna, no Ray here.

The backend hands over a :class:`TrialRequest` (the complete training config chosen for the
trial) and a ``report`` function; this module trains through :mod:`models.training`, writes
per-epoch TensorBoard scalars, keeps the best weights and leaves a traceback file behind when
training raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finesweep.models.run import Direction, Parallel, TrainingRun, staging_folder
from finesweep.search import run_dir as run_paths
from finesweep.search.run_dir import STATE_FILE, tensorboard_dir, trial_dir
from finesweep.search.user_code import add_user_folders

# Called after every epoch with its metrics (the training state after that epoch is already
# in the trial's folder when it is called).
Report = Callable[[dict[str, Any]], None]

@dataclass(frozen=True)
class SweepContext:
    """What every trial of one sweep shares; sent to each worker once."""

    metric: str
    mode: str
    max_epochs: int
    run_dir: str
    cpus_per_trial: float
    trial_timeout_s: float | None = None
    memory_mb: float | None = None
    # Where the user's modules are imported from (the spec's folder, the launch directory);
    # on a cluster node without them, Ray's runtime environment has put the files in place.
    import_roots: tuple[str, ...] = ()
    # Every logged name the sweep reads (its objectives and constrained values): their values at
    # the best epoch go with every report as ``best:<name>``, so the trial's objective vector is
    # the epoch whose weights are kept.
    watched: tuple[str, ...] = ()
    # A trial of several workers is one Ray Train run (resources.workers, strategy, placement);
    # cpus_per_trial and gpus_per_worker are each worker's.
    workers: int = 1
    strategy: str = "ddp"
    placement: str = "pack"
    gpus_per_worker: float = 0.0


@dataclass(frozen=True)
class TrialRequest:
    number: int
    seed: int
    # The trial's complete config in LightningCLI's terms: model, data and trainer sections.
    config: Mapping[str, Any]
    # Epochs the study already holds for this trial (a resumed sweep's re-run): epochs after these
    # that its training state holds are reported again, since their report never reached the
    # study (the state is written before each report); the earlier ones are not.
    reported_epochs: int = 0

    def training_run(self, context: SweepContext) -> TrainingRun:
        return TrainingRun.from_config(self.config, max_epochs=context.max_epochs, seed=self.seed,
                                       metric=context.metric, mode=context.mode)


def quiet_training_logs() -> None:
    """Lightning's start-up banners and tips, repeated per trial, drown the sweep's own view."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


class _Watchdog:
    """Ends the worker process when no epoch has finished for ``timeout`` seconds.

    A hung trial (a deadlock, a stuck collective, an endless loop) cannot be interrupted
    from inside Python, so the worker exits; Ray records the trial as failed and starts a
    fresh worker for the next one.
    """

    def __init__(self, timeout: float, error_file: Path) -> None:
        self.timeout = timeout
        self.error_file = error_file
        self.last_beat = time.monotonic()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="finesweep-watchdog", daemon=True)
        self.thread.start()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def stop(self) -> None:
        self.stopped.set()

    def _watch(self) -> None:
        while not self.stopped.wait(min(1.0, self.timeout / 4)):
            if time.monotonic() - self.last_beat > self.timeout:
                self.error_file.write_text(
                    f"TrialHung: no epoch finished within {self.timeout:g} s (budget.trial_timeout_s); "
                    "the trial's worker was ended\n", encoding="utf-8")
                os._exit(70)


def _data_segment_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@contextlib.contextmanager
def memory_cap(extra_mb: float | None) -> Iterator[None]:
    """Let the trial allocate at most ``extra_mb`` beyond what the worker holds already;
    past it allocations fail (MemoryError) inside the trial instead of exhausting the node.
    Linux only (RLIMIT_DATA); elsewhere the cap is not applied."""
    current = _data_segment_bytes() if extra_mb else None
    if current is None:
        yield
        return
    import resource  # Unix only (Windows has none): imported once /proc showed a Linux kernel.

    previous = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (current + int(extra_mb * 2**20), previous[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, previous)


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, MemoryError) or "can't allocate memory" in text or "out of memory" in text


def run_trial(context: SweepContext, request: TrialRequest, report: Report, accelerator: str = "cpu",
              parallel: Parallel | None = None) -> None:
    """Train one trial, calling ``report`` after every epoch with that epoch's metrics plus
    ``best_value`` and ``best_epoch`` so far (the trial's objective is its best epoch), and
    ``stopped_early`` on the last epoch when the trial's own callbacks or Trainer settings
    (EarlyStopping, max_steps, max_time) ended training before the budget's epochs.

    The trial keeps its training state in its folder after every epoch (removed when it finishes): an
    attempt that finds one there (a retry after its worker or node died, a resumed sweep's re-run
    after the driver was stopped or killed) goes on after that epoch. With ``parallel`` this is one
    rank of a multi-worker trial: every rank reports (the launcher forwards rank 0's), and only
    rank 0 writes TensorBoard, the weights and the training state."""
    # TensorBoard's writer brings TensorBoard, protobuf and numpy: the ledger imports this module and stays light.
    from finesweep.search.tensorboard_log import ScalarWriter

    quiet_training_logs()
    add_user_folders(context.import_roots)
    artifacts = trial_dir(context.run_dir, request.number)
    artifacts.mkdir(parents=True, exist_ok=True)
    error_file = artifacts / run_paths.ERROR_FILE
    writes = parallel is None or parallel.writes
    writer = ScalarWriter(tensorboard_dir(context.run_dir, request.number)) if writes else None
    watchdog: _Watchdog | None = None
    best: dict[str, Any] = {}
    # Sent with every report besides the metrics: where a retried trial went on from, whether
    # its own callbacks stopped it early.
    extra: dict[str, Any] = {}

    def keep_best(epoch: int, metrics: dict[str, float]) -> None:
        value = metrics[context.metric]
        if Direction(context.mode).better(value, best.get("value")):
            best.update(value=value, epoch=epoch,
                        watched={f"best:{n}": float(metrics[n]) for n in context.watched if n in metrics})

    # Names that callbacks log straight to the logger, step by step (LearningRateMonitor's lr-Adam):
    # Lightning lists them among the epoch's metrics too, where they are not written again.
    by_step: set[str] = set()

    def log_by_step(metrics: dict[str, float], step: int) -> None:
        by_step.update(metrics)
        if writer is not None:
            writer.add(metrics, step)

    def on_epoch_end(epoch: int, metrics: dict[str, float], *, trained: bool = True) -> None:
        if watchdog is not None:
            watchdog.beat()
        if trained and writer is not None:  # (an epoch of the training state, re-reported, is in TensorBoard already)
            writer.add({k: v for k, v in metrics.items() if k not in by_step}, epoch)
        keep_best(epoch, metrics)
        report({**metrics, "epoch": epoch, "best_value": best["value"], "best_epoch": best["epoch"],
                **best["watched"], **extra})

    try:
        run = request.training_run(context)
        import finesweep.models.training  # noqa: F401 - Lightning's import is not the trial's time.
        if context.trial_timeout_s:
            # Started once the imports are done: a fresh worker on a loaded machine may take
            # longer to import torch and Lightning than a short timeout allows for an epoch.
            watchdog = _Watchdog(context.trial_timeout_s, error_file)
        with memory_cap(context.memory_mb):
            _train(context, run, artifacts, accelerator, keep_best, extra, on_epoch_end, log_by_step,
                   tensorboard_dir(context.run_dir, request.number), request.reported_epochs, parallel)
    except Exception as error:
        text = traceback.format_exc()
        if _is_out_of_memory(error):
            text += (f"TrialOutOfMemory: the trial ran out of memory "
                     f"(resources.memory_mb={context.memory_mb}): {type(error).__name__}\n")
        error_file.write_text(text, encoding="utf-8")
        raise
    finally:
        if watchdog is not None:
            watchdog.stop()
        if writer is not None:
            writer.close()


def _train(context: SweepContext, run: TrainingRun, artifacts: Path, accelerator: str,
           keep_best: Callable[[int, dict[str, float]], None], extra: dict[str, Any],
           on_epoch_end: Callable[..., None], log_by_step: Callable[[dict[str, float], int], None],
           log_dir: Path, reported_epochs: int, parallel: Parallel | None = None) -> None:
    """Train a Lightning model for :func:`run_trial`, going on from the training state in
    ``artifacts`` when an earlier attempt left one (its epochs after ``reported_epochs`` reported
    again first). The state is rewritten after every epoch and removed once training has ended."""
    from finesweep.models.training import discard_checkpoint, fit, trained_epochs  # torch, Lightning: seconds

    state = artifacts / STATE_FILE
    resume_from = None
    if state.exists():
        try:
            history = trained_epochs(state)
        except Exception:  # Not a state this code can read: train from the start instead.
            state.unlink(missing_ok=True)
        else:
            extra["resumed_from_epoch"] = int(history[-1]["epoch"]) if history else 0
            for past in history:
                epoch, metrics = int(past["epoch"]), {k: v for k, v in past.items() if k != "epoch"}
                if epoch > reported_epochs:
                    on_epoch_end(epoch, metrics, trained=False)
                else:
                    keep_best(epoch, metrics)
            resume_from = state
    fit(run, on_epoch_end=on_epoch_end, checkpoint_path=artifacts / run_paths.CHECKPOINT_FILE,
        accelerator=accelerator, threads=max(1, int(context.cpus_per_trial)), state_path=state,
        resume_from=resume_from, on_stop_early=lambda epoch: extra.update(stopped_early=True),
        scalars=log_by_step, log_dir=log_dir, final_state=False, parallel=parallel)
    # Finished: nothing to go on from. (A trial that raised keeps it: Ray may retry it.)
    if parallel is None or parallel.writes:
        discard_checkpoint(state)


def prepare_rerun(run_dir: str | Path, number: int) -> bool:
    """Before an interrupted trial runs again: True when it left its training state (it goes on
    from there, and its earlier epochs' weights and TensorBoard scalars stay); otherwise what
    it wrote is removed and it starts over."""
    if (trial_dir(run_dir, number) / STATE_FILE).exists():
        return True
    for directory in (trial_dir(run_dir, number), tensorboard_dir(run_dir, number)):
        shutil.rmtree(directory, ignore_errors=True)
    return False


def discard_training_state(run_dir: str | Path, number: int) -> None:
    """The trial has ended for good: the state kept for going on is no longer needed (nor the
    private folder it is written through, named after it)."""
    state = trial_dir(run_dir, number) / STATE_FILE
    state.unlink(missing_ok=True)
    shutil.rmtree(staging_folder(state), ignore_errors=True)


def failure_reason(run_dir: str | Path, number: int) -> str | None:
    """The last line of a failed trial's traceback (the exception and its message)."""
    path = run_paths.error_path(run_dir, number)
    if not path.exists():
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[-1][:300] if lines else None
