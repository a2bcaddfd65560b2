"""The trial side: what runs inside a trial worker. No Optuna, no Ray here.

The backend hands over a :class:`TrialRequest` (the complete training config chosen for the
trial) and a ``report`` function; this module trains through :mod:`models.training`,
writes per-epoch TensorBoard scalars, keeps the best weights and leaves a traceback file
behind when training raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finesweep.models.run import TrainingRun
from finesweep.search import run_dir as run_paths
from finesweep.search.run_dir import STATE_FILE, tensorboard_dir, trial_dir
from finesweep.search.user_code import put_first_on_path

# Called after every epoch with its metrics and, when the sweep keeps training state for
# retries, the directory holding the state after that epoch (None otherwise).
Report = Callable[[dict[str, Any], "Path | None"], None]



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
    # Write the full training state after every epoch so a retried trial (its worker or
    # node died, `max_failures` > 0) goes on from its last epoch instead of epoch 1.
    keep_training_state: bool = False
    # Where the user's modules are imported from (the spec's folder, the launch directory);
    # on a cluster node without them, Ray's runtime environment has put the files in place.
    import_roots: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrialRequest:
    number: int
    seed: int
    # The trial's complete config in LightningCLI's terms: model, data and trainer sections.
    config: Mapping[str, Any]

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
    import resource

    previous = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (current + int(extra_mb * 2**20), previous[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, previous)


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, MemoryError) or "can't allocate memory" in text or "out of memory" in text


def run_trial(context: SweepContext, request: TrialRequest, report: Report,
              accelerator: str = "cpu", resume_from: Path | None = None) -> None:
    """Train one trial, calling ``report`` after every epoch with that epoch's metrics plus
    ``best_value`` and ``best_epoch`` so far (the trial's objective is its best epoch).

    ``resume_from`` is a directory an earlier attempt of this trial reported; training
    goes on after the epoch it holds."""
    import tempfile

    from finesweep.models.training import fit, is_better, trained_epochs
    from torch.utils.tensorboard import SummaryWriter

    quiet_training_logs()
    put_first_on_path(context.import_roots)
    artifacts = trial_dir(context.run_dir, request.number)
    artifacts.mkdir(parents=True, exist_ok=True)
    error_file = artifacts / run_paths.ERROR_FILE
    writer = SummaryWriter(str(tensorboard_dir(context.run_dir, request.number)),
                           filename_suffix=".scalars")
    watchdog = _Watchdog(context.trial_timeout_s, error_file) if context.trial_timeout_s else None
    best: dict[str, Any] = {}

    def keep_best(epoch: int, value: float) -> None:
        if is_better(value, best.get("value"), context.mode):
            best.update(value=value, epoch=epoch)

    timing: dict[str, Any] = {"pid": os.getpid()}
    resume_state = resume_from / STATE_FILE if resume_from is not None else None
    if resume_state is not None and resume_state.exists():
        history = trained_epochs(resume_state)
        for past in history:
            keep_best(int(past["epoch"]), past[context.metric])
        timing["resumed_from_epoch"] = int(history[-1]["epoch"]) if history else 0
    else:
        resume_state = None
    state_dir = Path(tempfile.mkdtemp(prefix="finesweep-state-")) if context.keep_training_state else None

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        if watchdog is not None:
            watchdog.beat()
        for name, value in metrics.items():
            writer.add_scalar(name, value, epoch)
        writer.flush()
        keep_best(epoch, metrics[context.metric])
        report({**metrics, "epoch": epoch, "best_value": best["value"], "best_epoch": best["epoch"],
                "reported_at": time.time(), **timing}, state_dir)

    try:
        with memory_cap(context.memory_mb):
            fit(request.training_run(context), on_epoch_end=on_epoch_end,
                         checkpoint_path=artifacts / run_paths.CHECKPOINT_FILE, accelerator=accelerator,
                         threads=max(1, int(context.cpus_per_trial)),
                         state_path=state_dir / STATE_FILE if state_dir is not None else None,
                         resume_from=resume_state,
                         on_first_step=lambda at: timing.update(first_step_at=at))

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
        writer.close()
        if state_dir is not None:
            import shutil

            shutil.rmtree(state_dir, ignore_errors=True)


def clear_trial_outputs(run_dir: str | Path, number: int) -> None:
    """Remove what an interrupted attempt of a trial wrote, before it runs again."""
    import shutil

    for directory in (trial_dir(run_dir, number), tensorboard_dir(run_dir, number)):
        shutil.rmtree(directory, ignore_errors=True)


def failure_reason(run_dir: str | Path, number: int) -> str | None:
    """The last line of a failed trial's traceback (the exception and its message)."""
    path = run_paths.error_path(run_dir, number)
    if not path.exists():
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[-1][:300] if lines else None
