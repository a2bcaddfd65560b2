"""A sweep from a validated spec to an exported best config: the steps, in order.

Ray is imported only here, lazily, after the spec has been validated, so a wrong spec
never pays for (or starts) Ray.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import yaml
from finesweep.search.checkpoints import apply_retention
from finesweep.search.cluster import (
    ClusterError,
    ResourceError,
    check_reachable,
    nodes_line,
    prepare_ray_environment,
    trials_per_node,
)
from finesweep.search.export import write_exports
from finesweep.search.ledger import TrialLedger
from finesweep.search.leftovers import clean_up as clean_up_leftovers
from finesweep.search.leftovers import record_session
from finesweep.search.lock import LockError, RunLock, claim_study, release_study, renew_study
from finesweep.search.progress import SweepMonitor, summary_table
from finesweep.search.run_dir import (
    BEST_FILE,
    DATA_SUMMARY,
    LOCK_FILE,
    RAY_DIR,
    SESSION_FILE,
    SPEC_COPY,
    STUDY_FILE,
    TENSORBOARD_DIR,
    TOP_DIR,
    TRIALS_DIR,
    tensorboard_root,
    tune_dir,
    write_atomically,
)
from finesweep.search.signals import StopRequested, signal_name
from finesweep.search.spec import SweepSpec
from finesweep.search.spec_loading import SPEC_DIR_RECORD
from finesweep.search.strategies import make_sampler
from finesweep.search.study import (
    describe_storage,
    fail_unfinished,
    leave_write_ahead,
    open_study,
    ranked_trials,
    storage_url,
    without_password,
)
from finesweep.search.tensorboard_log import HParamsLog
from finesweep.search.trial import clear_trial_outputs
from finesweep.search.tune_run import remove_empty_trial_dirs
from finesweep.search.user_code import shipped_modules

if TYPE_CHECKING:
    import optuna



class SweepError(RuntimeError):
    """The sweep cannot start; nothing has been trained."""


@dataclass(frozen=True)
class SweepResult:
    run_dir: Path
    storage: str
    seconds: float
    best_value: float | None
    best_trial: int | None
    exports: list[Path]
    # 128 + the signal number when a first SIGINT/SIGTERM stopped the sweep early.
    interrupted: int | None = None
    # Why the sweep stopped before its budget: every trial would have failed the same way.
    stopped_because: str | None = None




def describe_data(spec: SweepSpec) -> str | None:
    """The DataModule's one-line account of its data (``summary()``, where it has one), built
    with the spec's fixed data arguments; None when it gives none or cannot build it here."""
    from finesweep.models.components import import_class, instantiate

    if not callable(getattr(import_class(spec.data.class_path), "summary", None)):
        return None
    try:
        data = instantiate(spec.data.class_path, spec.training_config({})["data"]["init_args"])
        return str(data.summary())
    except Exception as error:  # the trials will report it with their traceback
        return f"(no summary: {type(error).__name__}: {error})"


def default_run_dir(spec: SweepSpec) -> Path:
    return Path("runs") / spec.name


def _check_resume(spec: SweepSpec, run_dir: Path, resume: bool) -> str | None:
    """Refuse a second sweep into the same run directory unless resuming, and a resume that
    would mix incomparable trials; returns a note on the accepted changes."""
    from finesweep.search.resume import compare_specs
    from finesweep.search.spec import parse_spec

    stored = run_dir / SPEC_COPY
    if not resume:
        if stored.exists():
            raise SweepError(f"{run_dir} already holds a sweep; add --resume to continue it "
                             "(or `launch.py resume` it), or choose another --out")
        return None
    if not stored.exists():
        raise SweepError(f"nothing to resume: {run_dir} holds no sweep ({SPEC_COPY} is missing)")
    changes = compare_specs(parse_spec(stored, read_inputs=False), spec)
    if changes.incompatible:
        raise SweepError("cannot resume with this spec, its trials would not be comparable: "
                         + "; ".join(changes.incompatible))
    return "; ".join(changes.compatible) or None


def build_sampler(spec: SweepSpec) -> object:
    """The spec's strategy; a seeded one draws per trial, so a resumed sweep goes on as
    an uninterrupted one would instead of repeating its first suggestions."""
    from finesweep.search.seeding import PerTrialSeededSampler

    strategy = spec.strategy
    if strategy.seed is None:
        return make_sampler(strategy.name, spec.space, strategy.options, None)
    return PerTrialSeededSampler(
        lambda seed: make_sampler(strategy.name, spec.space, strategy.options, seed), strategy.seed)


def _open_fresh_or_resumed(spec: SweepSpec, url: str, sampler: object, resume: bool):
    from sqlalchemy.exc import SQLAlchemyError

    try:
        study = open_study(spec, url, sampler)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise SweepError(f"cannot open the study storage {describe_storage(url)}: {reason}") from None
    if not resume and study.get_trials(deepcopy=False):
        raise SweepError(f"storage {describe_storage(url)} already has a study named {spec.name!r} with "
                         "trials; resume it from its run directory, or give the spec another name")
    return study


# What a sweep writes at the top of its run directory: a folder holding only these (say a
# tensorboard/ made ready for a live TensorBoard) is a run in the making, not someone's files.
RUN_ENTRIES = frozenset({SPEC_COPY, LOCK_FILE, STUDY_FILE, SESSION_FILE, TENSORBOARD_DIR, TRIALS_DIR, RAY_DIR,
                         BEST_FILE, TOP_DIR})


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse, before anything is created, a run directory that cannot hold this sweep: a
    file, or a folder holding something other than a finesweep run."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SweepError(f"--out {run_dir} is a file, not a run directory; choose another --out")
    if not run_dir.is_dir():
        if resume:
            raise SweepError(f"nothing to resume: {run_dir} does not exist")
        return
    try:
        entries = {entry.name for entry in run_dir.iterdir()}
    except OSError as error:
        raise SweepError(f"cannot read the run directory {run_dir}: {error.strerror}") from None
    if entries - RUN_ENTRIES and not entries & {SPEC_COPY, LOCK_FILE}:
        raise SweepError(f"--out {run_dir} is a non-empty folder that holds no finesweep run "
                         f"({len(entries)} entries, no {SPEC_COPY}); choose an empty or new folder")


def resume_hint(run_dir: Path) -> str:
    return f"python launch.py resume {run_dir}"


class SweepStopped(RuntimeError):
    """A second signal stopped the sweep at once; finished trials are in the study."""

    def __init__(self, exit_code: int, run_dir: Path) -> None:
        self.exit_code = exit_code
        super().__init__(f"stopped at once; finished trials are kept, running ones run again on "
                         f"`{resume_hint(run_dir)}`")


def _private_file(path: Path) -> None:
    """Create ``path`` empty and owner-only if it does not exist (SQLite keeps the mode)."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def run_sweep(spec: SweepSpec, run_dir: Path, *, address: str | None = None, verbose: bool = False,
              resume: bool = False, out: TextIO | None = None,
              stop: StopRequested | None = None) -> SweepResult:
    """Run (or resume) the sweep into ``run_dir``, holding its lock throughout.

    Raises SweepError for anything refused before training (nothing is left behind in a
    run directory this call created), SweepStopped after a second Ctrl-C/SIGTERM. After a
    first one, returns with ``interrupted`` set: the running trials stay resumable."""
    out = out or sys.stdout
    stop = stop or StopRequested(lambda signum: (
        f"finesweep: {signal_name(signum)}: stopping, no new trials; running trials will run again "
        f"on `{resume_hint(run_dir)}` ({signal_name(signal.SIGINT)} again stops at once)"))
    if address is not None:
        try:
            check_reachable(address)
        except ClusterError as error:
            raise SweepError(str(error)) from None
    check_run_dir(run_dir, resume)
    try:
        run_dir.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    except OSError as error:
        raise SweepError(f"cannot create the run directory {run_dir}: {error.strerror}") from None
    lock = RunLock(run_dir)
    try:
        lock.acquire()
    except LockError as error:
        raise SweepError(str(error)) from None  # Never remove what the holder is using.
    stop.install()
    try:
        return _run_locked(spec, run_dir, address=address, verbose=verbose, resume=resume, out=out, stop=stop)
    except SweepError:
        if created:  # Refused before any trial: leave nothing behind.
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except KeyboardInterrupt:
        raise SweepStopped(stop.exit_code if stop.requested else 130, run_dir) from None
    finally:
        stop.restore()
        with contextlib.suppress(Exception):  # The study is sound either way: this only tidies.
            leave_write_ahead(storage_url(spec.storage, run_dir))
        lock.release()


def _run_locked(spec: SweepSpec, run_dir: Path, *, address: str | None, verbose: bool, resume: bool,
                out: TextIO, stop: StopRequested) -> SweepResult:
    """The sweep proper, under the run directory's lock."""

    started = time.monotonic()
    url = storage_url(spec.storage, run_dir)
    accepted_changes = _check_resume(spec, run_dir, resume)
    cleaned = clean_up_leftovers(run_dir)
    if cleaned:
        out.write(f"finesweep: ended {cleaned} Ray processes left by an earlier driver of {run_dir}\n")

    prepare_ray_environment(address)  # Before Ray is imported: it reads these settings then.
    from finesweep.search import ray_backend  # Ray's import and start-up come after validation.

    out.write(f"finesweep: starting Ray ({'local, 127.0.0.1' if address is None else address})\n")
    out.flush()
    try:
        if ray_backend.start_ray(address, verbose=verbose, py_modules=shipped_modules(spec)):
            record_session(run_dir, ray_backend.session_dir())
    except ClusterError as error:
        raise SweepError(str(error)) from None
    stop.install()  # ray.init installs its own SIGTERM handler.
    try:
        ray_backend.check_resources(spec.resources.cpus, spec.resources.gpus)
    except ResourceError as error:
        raise SweepError(str(error)) from None

    sampler = build_sampler(spec)
    if spec.storage is None:
        _private_file(run_dir / STUDY_FILE)
    study = _open_fresh_or_resumed(spec, url, sampler, resume)
    if spec.storage is None:
        return _run_study(spec, run_dir, study, url, accepted_changes, address=address, verbose=verbose,
                          resume=resume, out=out, stop=stop, started=started)
    try:
        claim_study(study)
    except LockError as error:
        raise SweepError(str(error)) from None
    try:
        return _run_study(spec, run_dir, study, url, accepted_changes, address=address, verbose=verbose,
                          resume=resume, out=out, stop=stop, started=started)
    finally:
        with contextlib.suppress(Exception):  # Unreachable database: the lease runs out by itself.
            release_study(study)


def _run_study(spec: SweepSpec, run_dir: Path, study: optuna.Study, url: str, accepted_changes: str | None, *,
               address: str | None, verbose: bool, resume: bool, out: TextIO, stop: StopRequested,
               started: float) -> SweepResult:
    """Run the trials into the opened (and, in shared storage, claimed) study and export."""
    from finesweep.search import ray_backend
    from finesweep.search.resume import finished_count, interrupted_trials

    _write_spec_copy(run_dir / SPEC_COPY, spec)
    # Trial seeds derive from the strategy seed, so a seeded sweep retrains identically.
    seed_base = study.user_attrs.get("seed_base")
    if seed_base is None:
        seed_base = spec.strategy.seed if spec.strategy.seed is not None else random.randrange(1, 2**30)
        study.set_user_attr("seed_base", seed_base)
    # `launch.py status` on a bare storage URL names the metric from here.
    study.set_user_attr("metric", spec.metric)
    done = finished_count(study)
    rerun = interrupted_trials(study)
    if resume:
        out.write(f"finesweep: resuming {spec.name!r}: {done} trials finished, {len(rerun)} interrupted "
                  f"(run again as they were), {max(spec.budget.trials - done, 0)} to go\n")
        if accepted_changes:
            out.write(f"finesweep: spec changes accepted: {accepted_changes}\n")
        for frozen in rerun:
            clear_trial_outputs(run_dir, frozen.number)
    summary = describe_data(spec)
    if summary:
        # What the trials train on, once per sweep: rows read and dropped, labels, split sizes.
        out.write(f"finesweep: data: {summary}\n")
        write_atomically(run_dir / DATA_SUMMARY, summary + "\n")
    hparams = HParamsLog(tensorboard_root(run_dir), spec.space, spec.metric)
    hparams.write_experiment()
    to_run = max(spec.budget.trials - done, 0)
    stopped_because = None
    monitor = SweepMonitor(spec, spec.budget.trials, hparams, out, already_done=done)
    best_so_far = ranked_trials(study, spec.mode)
    if best_so_far:
        monitor.best = (best_so_far[0].value, best_so_far[0].number)
    if to_run and not stop.requested:
        out.write(f"finesweep: sweep {spec.name!r}: {to_run} trials of {spec.task_label}, "
                  f"strategy {spec.strategy.name}, scheduler {spec.scheduler.name}, "
                  f"{spec.resources.concurrency} at a time; study in {describe_storage(url)}\n")
        out.flush()
        ledger = TrialLedger(study, spec, seed_base, run_dir, monitor, rerun, stop.event)
        try:
            stopped_because = ray_backend.run_trials(
                ledger, trials=to_run, verbose=verbose, on_cluster=address is not None,
                tick=(lambda: renew_study(study)) if spec.storage is not None else None)
        finally:
            remove_empty_trial_dirs(tune_dir(run_dir))
    if not stop.requested:
        fail_unfinished(study, "the sweep ended while the trial was running")
        monitor.close_unfinished(study)
    ranked = ranked_trials(study, spec.mode)
    exports = write_exports(spec, run_dir, ranked)
    apply_retention(run_dir, study, spec.mode, spec.keep_best_checkpoints)
    seconds = time.monotonic() - started
    best = ranked[0] if ranked else None
    result = SweepResult(run_dir, url, seconds, best.value if best else None,
                         best.number if best else None, exports,
                         interrupted=stop.exit_code if stop.requested else None, stopped_because=stopped_because)
    if stop.requested:
        left = max(spec.budget.trials - finished_count(study), 0)
        out.write(f"\nfinesweep: sweep {spec.name!r} stopped by {signal_name(stop.signum or signal.SIGINT)}: "
                  f"{finished_count(study)} trials finished, {left} to go; continue with "
                  f"`{resume_hint(run_dir)}`\n")
        out.flush()
        return result
    out.write(f"\nfinesweep: sweep {spec.name!r} finished in {seconds:.0f} s\n")
    out.write(summary_table(study, spec) + "\n")
    trials = study.get_trials(deepcopy=False)
    if address is not None or len(trials_per_node(trials)) > 1:
        out.write(nodes_line(trials) + "\n")
    if exports:
        out.write(f"best config: {exports[0]}\n")
    else:
        out.write("no trial completed; nothing exported\n")
    if stopped_because:
        out.write(f"finesweep: the sweep stopped after its first failing trial, since every trial would fail "
                  f"the same way: {stopped_because}\n")
    return result


def _write_spec_copy(path: Path, spec: SweepSpec) -> None:
    """The spec as run, for resume and the views; a storage password is left out (a resume
    gets it from FINESWEEP_STORAGE, PGPASSWORD or ~/.pgpass) and the file is owner-only."""
    raw = dict(spec.raw)
    if raw.get("storage"):
        raw["storage"] = without_password(str(raw["storage"]))
    # The original spec's folder: its relative paths and modules are found from there.
    text = f"{SPEC_DIR_RECORD}{spec.base_dir}\n" + yaml.safe_dump(raw, sort_keys=False)
    write_atomically(path, text, private=True)
