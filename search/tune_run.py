"""A Ray Tune run's parts that need no Ray: what every trial is sent, what each may use, when
the whole run stops, and what is tidied up after it.

:mod:`search.ray_backend` turns these into Tune's objects (trainable, Stopper, Callback); the
decisions stay here, where tests drive them without starting Ray.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from finesweep.search.run_dir import ERROR_FILE, TUNE_EXPERIMENT, ray_error_path, ray_storage, ray_trial_name
from finesweep.search.trial import SweepContext
from finesweep.search.user_code import import_roots

if TYPE_CHECKING:
    from finesweep.search.ledger import TrialLedger
    from finesweep.search.spec import SweepSpec
    from finesweep.search.views.progress import SweepMonitor

TUNE_ENVIRONMENT = {
    # Ray's own per-trial CSV/JSON/TensorBoard loggers duplicate what finesweep writes itself
    # and cost time on every result.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "1000",
    # finesweep handles SIGINT itself (search/signals.py): Tune's handler would end the run
    # with every running trial counted as ended.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    # Tune's own experiment snapshot (every trial's state, for Tuner.restore) is never read:
    # the study is what a resume reads. By default Tune rewrites it whenever 5% of the run's
    # time allows, and each rewrite grows with the trial count (0.2 s at 400 trials); now only
    # the one at the end of the run is written.
    "TUNE_GLOBAL_CHECKPOINT_S": str(10**9),
}


def quiet_tune_logs(verbose: bool) -> None:
    """Tune logs every failed trial's traceback; finesweep records the reason in the study and
    the traceback in trials/trial_NNNN/error.txt, and prints one line instead (``--verbose``
    shows Ray's own logs again)."""
    if not verbose:
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
        # A trial still running when the sweep stops (after a metric that is never logged) ends
        # with an error no one asks for, which Ray logs as an "Unhandled error" with its whole
        # traceback; the trial's reason is already recorded and printed in one line.
        os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"


def sweep_context(spec: SweepSpec, run_dir: Path, on_cluster: bool) -> SweepContext:
    """What every trial of the sweep shares, sent to each worker once."""
    return SweepContext(
        metric=spec.metric, mode=spec.mode,
        # Local workers import the user's modules from the spec's folder; on a cluster, Ray's
        # runtime environment has shipped them (ray_backend.start_ray), as no shared folder is assumed.
        import_roots=() if on_cluster else tuple(import_roots(spec.base_dir)),
        max_epochs=spec.budget.max_epochs, run_dir=str(run_dir.resolve()),
        cpus_per_trial=spec.resources.cpus, trial_timeout_s=spec.budget.trial_timeout_s,
        memory_mb=spec.resources.memory_mb, watched=spec.watched,
        workers=spec.resources.workers, strategy=spec.resources.strategy, placement=spec.resources.placement,
        gpus_per_worker=spec.resources.gpus,
    )


def trial_resources(spec: SweepSpec) -> dict[str, float]:
    """One trial's share of a node, in Ray's resource names (memory in bytes). A multi-worker
    trial's Tune process only starts its Ray Train run and waits: its workers hold the CPUs and GPUs."""
    if spec.resources.workers > 1:
        # Tune refuses a trial that asks for nothing at all; 1 MiB of memory holds no CPU a
        # worker needs (on a 2-CPU machine, 2 one-CPU workers still fit).
        return {"cpu": 0, "memory": 2**20}
    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    if spec.resources.memory_mb:
        resources["memory"] = int(spec.resources.memory_mb * 2**20)
    return resources


def tune_settings(spec: SweepSpec, trials: int) -> dict[str, Any]:
    """Ray Tune's ``TuneConfig`` arguments for ``trials`` trials, besides searcher and scheduler."""
    return {"metric": spec.metric, "mode": spec.mode, "num_samples": trials,
            "max_concurrent_trials": spec.resources.concurrency, "time_budget_s": spec.budget.time_limit_s,
            # A reused worker keeps torch, Lightning and the dataset loaded between trials. A
            # multi-worker trial's process owns its Ray Train run, which ends with it when the
            # scheduler stops the trial: that process is not kept for the next one.
            "reuse_actors": spec.resources.workers == 1, "trial_dirname_creator": _trial_dirname}


def _trial_dirname(trial: Any) -> str:
    return ray_trial_name(trial.trial_id)


def train_storage(run_dir: str | Path) -> str:
    """Where Ray Train keeps its own state for a multi-worker trial's run: beside Tune's, in ray/."""
    return str((ray_storage(Path(run_dir)) / "train").resolve())


def storage_settings(run_dir: Path, verbose: bool) -> dict[str, Any]:
    """Ray Tune's ``RunConfig`` arguments for where its own state goes: ray/tune/ in the run directory."""
    return {"name": TUNE_EXPERIMENT, "storage_path": str(ray_storage(run_dir).resolve()),
            "verbose": 2 if verbose else 0}


class RunControl:
    """When the whole run must stop, and what happens on each turn of Tune's control loop.

    The run stops once the driver's ``stop`` flag is set (first Ctrl-C / SIGTERM) or the
    ledger has seen a sweep-ending failure. Each turn (several a second) lets the monitor print
    a status line now and then between trial ends, and calls ``tick`` every TICK_S seconds
    (the driver renews its lease on the study there).

    Tune may copy or pickle its run config: the flag stays in this process, looked up by key,
    so every copy here sees it set and a copy elsewhere never stops anything; the ledger, the
    console and ``tick`` stay with the driver's own object.
    """

    TICK_S = 30.0
    _flags: dict[str, threading.Event] = {}

    def __init__(self, stop: threading.Event, ledger: TrialLedger | None = None,
                 monitor: SweepMonitor | None = None, tick: Callable[[], None] | None = None) -> None:
        self.key = f"{os.getpid()}-{id(stop)}"
        self._flags[self.key] = stop
        self.ledger = ledger
        self.monitor = monitor
        self.tick = tick
        self._ticked = time.monotonic()

    def should_stop(self) -> bool:
        flag = self._flags.get(self.key)
        stopped = flag is not None and flag.is_set()
        return stopped or (self.ledger is not None and self.ledger.abort_reason is not None)

    def step(self) -> None:
        if self.monitor is not None:
            self.monitor.heartbeat()
        if self.tick is not None and time.monotonic() - self._ticked > self.TICK_S:
            self._ticked = time.monotonic()
            self.tick()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "ledger": None, "monitor": None, "tick": None}


def ray_failure_reason(run_dir: Path, trial_id: str, session_dir: str | None) -> str | None:
    """Ray's account of a failure the trial could not write itself (its worker, raylet or node
    died). Tune writes it in the driver's staging folder inside Ray's session ``session_dir``
    before telling the searcher, and copies it under the run directory only later."""
    candidates: list[Path] = [ray_error_path(run_dir, trial_id)]
    if session_dir is not None:
        candidates += Path(session_dir).glob(
            f"artifacts/*/*/driver_artifacts/{ray_trial_name(trial_id)}/{ERROR_FILE}")
    path = next((c for c in candidates if c.exists()), None)
    if path is None:
        return None
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()
             if line.strip() and not line.startswith("Failure #")]
    return lines[0][:300] if lines else None


def remove_empty_trial_dirs(tune_dir: Path) -> list[Path]:
    """Remove the ``ray_*`` trial folders Ray Tune left empty; return them.

    Tune makes one per trial, but finesweep switches off its per-trial loggers and keeps the
    trial's outputs under ``trials/`` and ``tensorboard/``, so most stay empty and only clutter
    the run directory. A non-empty one is kept: Ray writes a failed trial's error.txt there
    (read by :func:`ray_failure_reason` when the worker died before writing its own).
    """
    removed = []
    for folder in sorted(tune_dir.glob(ray_trial_name("*"))):
        if folder.is_dir() and not any(folder.iterdir()):
            try:
                folder.rmdir()
            except OSError:
                continue  # written into meanwhile (another driver on the same folder): keep it
            removed.append(folder)
    return removed


# How Ray's driver prints an error its raylet pushed (a worker that died): "(raylet) ...",
# coloured or not. finesweep has already recorded the trial's own reason and printed it.
RAYLET_LINE = re.compile(r"^(\x1b\[[0-9;]*m)?\(raylet[^)]*\)")


class RayNoiseFilter(io.TextIOBase):
    """A text stream that passes every line on to ``stream`` but those of Ray's raylet."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pending = ""
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.pending += text
            *lines, self.pending = self.pending.split("\n")
            for line in lines:
                if not RAYLET_LINE.match(line):
                    self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def hidden_raylet_errors(verbose: bool) -> Iterator[None]:
    """Without ``verbose``, drop the lines Ray prints for its raylet's errors while a run goes
    on (a trial's worker that died: the trial is recorded FAIL with its reason and shown in
    one progress line). Ray prints them through ``sys.stdout`` and ``sys.stderr``."""
    if verbose:
        yield
        return
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RayNoiseFilter(streams[0]), RayNoiseFilter(streams[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = streams
