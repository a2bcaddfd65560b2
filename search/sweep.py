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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from finesweep.search import run_dir as run_paths
from finesweep.search.cluster import (
    ClusterError,
    ResourceError,
    check_reachable,
    machines,
    nodes_line,
    prepare_ray_environment,
)
from finesweep.search.cluster.placement import check_this_machine
from finesweep.search.dry_run import describe_data, run_dry_run
from finesweep.search.ledger import TrialLedger
from finesweep.search.resume import compare_specs, finished_count, interrupted_trials, write_spec_copy
from finesweep.search.run_dir import tensorboard_root, tune_dir, write_atomically
from finesweep.search.run_dir.checkpoints import apply_retention
from finesweep.search.run_dir.files import RunInfo
from finesweep.search.run_dir.leftovers import clean_up as clean_up_leftovers
from finesweep.search.run_dir.leftovers import record_session
from finesweep.search.run_dir.lock import LockError, RunLock, claim_study, release_study, renew_study
from finesweep.search.signals import StopRequested, signal_name
from finesweep.search.spec import SpecError, SweepSpec, parse_spec
from finesweep.search.strategies.seeding import build_sampler
from finesweep.search.study import (
    describe_storage,
    fail_unfinished,
    first_value,
    leave_write_ahead,
    open_study,
    ranked_trials,
    sqlite_file,
    storage_url,
)
from finesweep.search.tensorboard_log import HParamsLog
from finesweep.search.trial import prepare_rerun
from finesweep.search.tune_run import remove_empty_trial_dirs
from finesweep.search.user_code import UserCodeTimeout, shipped_modules, time_limit
from finesweep.search.views.export import write_exports
from finesweep.search.views.pareto_front import record_objectives
from finesweep.search.views.progress import SweepMonitor, strategy_text, summary_table

if TYPE_CHECKING:
    import optuna



class SweepError(RuntimeError):
    """The sweep cannot start; nothing has been trained."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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




def default_run_dir(spec: SweepSpec) -> Path:
    return run_paths.default_run_dir(spec.name)


def _check_resume(spec: SweepSpec, run_dir: Path, resume: bool) -> str | None:
    """Refuse a second sweep into the same run directory unless resuming, and a resume that
    would mix incomparable trials; returns a note on the accepted changes."""
    stored = run_dir / run_paths.SPEC_COPY
    if not resume:
        if stored.exists():
            raise SweepError(f"{run_dir} already holds a sweep; add --resume to continue it "
                             "(or `launch.py resume` it), or choose another --out")
        return None
    if not stored.exists():
        raise SweepError(f"nothing to resume: {run_dir} holds no sweep ({run_paths.SPEC_COPY} is missing)")
    with time_limit("the stored spec's classes (importing your module, the DataModule)"):
        changes = compare_specs(parse_spec(stored, read_inputs=False), spec)
    if changes.incompatible:
        raise SweepError("cannot resume with this spec, its trials would not be comparable: "
                         + "; ".join(changes.incompatible))
    return "; ".join(changes.compatible) or None


def _open_fresh_or_resumed(spec: SweepSpec, url: str, sampler: object, resume: bool):
    # Imported here: SQLAlchemy is slow to import.
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
RUN_ENTRIES = frozenset({
    run_paths.SPEC_COPY, run_paths.LOCK_FILE, run_paths.STUDY_FILE, run_paths.SESSION_FILE, run_paths.TENSORBOARD_DIR,
    run_paths.TRIALS_DIR, run_paths.RAY_DIR, run_paths.BEST_FILE, run_paths.TOP_DIR, run_paths.FRONT_DIR})


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
    if entries - RUN_ENTRIES and not entries & {run_paths.SPEC_COPY, run_paths.LOCK_FILE}:
        raise SweepError(f"--out {run_dir} is a non-empty folder that holds no finesweep run "
                         f"({len(entries)} entries, no {run_paths.SPEC_COPY}); choose an empty or new folder")


def resume_hint(run_dir: Path) -> str:
    return f"python launch.py resume {run_dir}"


class SweepStopped(RuntimeError):
    """A second signal stopped the sweep at once; finished trials are in the study."""

    def __init__(self, exit_code: int, run_dir: Path) -> None:
        self.exit_code = exit_code
        super().__init__(f"stopped at once; finished trials are kept, running ones run again on "
                         f"`{resume_hint(run_dir)}`")


def _private_file(path: Path | None) -> None:
    """Create an SQLite study file empty and owner-only if it does not exist (SQLite keeps the
    mode, and gives its journal and WAL files the same); nothing for other databases."""
    if path is None or path.exists() or not path.parent.is_dir():
        return  # A missing folder is reported when the study is opened.
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as error:
        raise SweepError(f"cannot create the study database {path}: {error.strerror}") from None


def run_sweep(spec: SweepSpec, run_dir: Path, *, address: str | None = None, verbose: bool = False,
              resume: bool = False, out: TextIO | None = None,
              stop: StopRequested | None = None, dry_run: bool = True) -> SweepResult:
    """Run (or resume) the sweep into ``run_dir``, holding its lock throughout; first, unless
    ``dry_run`` is False, dry-run its configurations (:mod:`search.dry_run`) before Ray starts.

    Raises SweepError for anything refused before training, SpecError for a dry run that
    failed (nothing is left behind in a run directory this call created), SweepStopped after a
    second Ctrl-C/SIGTERM. After a first one, returns with ``interrupted`` set: the running
    trials stay resumable."""
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
        return _run_locked(spec, run_dir, address=address, verbose=verbose, resume=resume, out=out, stop=stop,
                           dry_run=dry_run)
    except (SweepError, SpecError):
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


@dataclass
class _Session:
    """One run of the sweep command, under the run directory's lock: what every step reads."""

    spec: SweepSpec
    run_dir: Path
    address: str | None
    verbose: bool
    resume: bool
    out: TextIO
    stop: StopRequested
    started: float = field(default_factory=time.monotonic)
    url: str = ""
    accepted_changes: str | None = None
    dry_run_summary: str | None = None
    dry_run_done: bool = False


def _run_locked(spec: SweepSpec, run_dir: Path, *, address: str | None, verbose: bool, resume: bool,
                out: TextIO, stop: StopRequested, dry_run: bool) -> SweepResult:
    """The sweep proper, under the run directory's lock."""
    run = _Session(spec, run_dir, address, verbose, resume, out, stop)
    if address is None and (unplaceable := check_this_machine(spec)) is not None:
        raise unplaceable  # A local Ray gets this machine: a trial it cannot place is refused now.
    run.url = storage_url(spec.storage, run_dir)
    run.accepted_changes = _check_resume(spec, run_dir, resume)
    cleaned = clean_up_leftovers(run_dir)
    if cleaned:
        out.write(f"finesweep: ended {len(cleaned)} Ray processes left by an earlier driver of {run_dir}: "
                  f"{', '.join(leftover.describe() for leftover in cleaned)}\n")
    if dry_run:
        try:  # A trial that would hang hangs here first: a trial's own limit bounds it too.
            with time_limit("the dry run", spec.budget.trial_timeout_s, "budget.trial_timeout_s, or --no-dry-run"):
                report = run_dry_run(spec)  # Raises a located SpecError: nothing has started yet.
        except UserCodeTimeout as error:
            raise SweepError(str(error)) from None
        out.write(report.line() + "\n")
        out.flush()
        run.dry_run_summary, run.dry_run_done = report.data_summary, True
    if stop.requested:
        raise SweepError(f"stopped by {signal_name(stop.signum or signal.SIGINT)} before any trial started",
                         exit_code=stop.exit_code)
    # The study is opened before Ray starts: a storage that cannot be reached (a wrong URL or
    # password, a folder that does not exist) is refused at once, not after Ray's start-up.
    sampler = build_sampler(spec)
    _private_file(sqlite_file(run.url))
    study = _open_fresh_or_resumed(spec, run.url, sampler, resume)

    prepare_ray_environment(address)  # Before Ray is imported: it reads these settings then.
    from finesweep.search import ray_backend  # Ray's import and start-up come after validation.

    out.write(f"finesweep: starting Ray ({'local, 127.0.0.1' if address is None else address})\n")
    out.flush()
    ray_started = time.monotonic()
    try:
        if ray_backend.start_ray(address, verbose=verbose, py_modules=shipped_modules(spec)):
            record_session(run_dir, ray_backend.session_dir())
    except ClusterError as error:
        raise SweepError(str(error)) from None
    out.write(f"finesweep: Ray {'started' if address is None else 'joined'} in "
              f"{time.monotonic() - ray_started:.1f} s\n")
    stop.install()  # ray.init installs its own SIGTERM handler.
    try:
        ray_backend.check_resources(spec.resources.cpus, spec.resources.gpus, spec.resources)
    except ResourceError as error:
        raise SweepError(str(error)) from None

    if spec.storage is None:
        return _run_study(run, study)
    try:
        claim_study(study)
    except LockError as error:
        raise SweepError(str(error)) from None
    try:
        return _run_study(run, study)
    finally:
        with contextlib.suppress(Exception):  # Unreachable database: the lease runs out by itself.
            release_study(study)


def _run_study(run: _Session, study: optuna.Study) -> SweepResult:
    """Run the trials into the opened (and, in shared storage, claimed) study and export."""
    # Imported here: Ray is slow to import.
    from finesweep.search import ray_backend

    spec, run_dir, out, stop = run.spec, run.run_dir, run.out, run.stop
    write_spec_copy(run_dir / run_paths.SPEC_COPY, spec, study)
    # Trial seeds derive from the strategy seed, so a seeded sweep retrains identically.
    seed_base = study.user_attrs.get("seed_base")
    if seed_base is None:
        seed_base = spec.strategy.seed if spec.strategy.seed is not None else random.randrange(1, 2**30)
        study.set_user_attr("seed_base", seed_base)
    # `launch.py status` on a bare storage URL names the metric from here.
    study.set_user_attr("metric", spec.metric)
    record_objectives(study, spec)
    done = finished_count(study)
    rerun = interrupted_trials(study)
    going_on = [frozen.number for frozen in rerun if prepare_rerun(run_dir, frozen.number)]
    if run.resume:
        kept = f"; {len(going_on)} of them go on after their last finished epoch" if going_on else ""
        out.write(f"finesweep: resuming {spec.name!r}: {done} trials finished, {len(rerun)} interrupted "
                  f"(run again with the same parameters and seed{kept}), "
                  f"{max(spec.budget.trials - done, 0)} to go\n")
        if run.accepted_changes:
            out.write(f"finesweep: spec changes accepted: {run.accepted_changes}\n")
    summary = run.dry_run_summary
    if not run.dry_run_done:
        with time_limit("the DataModule's summary()"):
            summary = describe_data(spec)
    if summary:
        # What the trials train on, once per sweep: rows read and dropped, labels, split sizes.
        out.write(f"finesweep: data: {summary}\n")
        write_atomically(run_dir / run_paths.DATA_SUMMARY, summary + "\n")
    hparams = HParamsLog(tensorboard_root(run_dir), spec.space, spec.metric, [o.name for o in spec.objectives[1:]])
    hparams.write_experiment()
    to_run = max(spec.budget.trials - done, 0)
    stopped_because = None
    monitor = SweepMonitor(spec, spec.budget.trials, hparams, out, study=study, started_at=run.started)
    if to_run and not stop.requested:
        out.write(f"finesweep: sweep {spec.name!r}: {to_run} trials of {spec.task_label}, "
                  f"strategy {strategy_text(spec)}, scheduler {spec.scheduler.name}, "
                  f"{spec.resources.concurrency} at a time; study in {describe_storage(run.url)}\n")
        out.flush()
        ledger = TrialLedger(study, spec, seed_base, run_dir, monitor, rerun, stop.event, going_on=going_on)
        try:
            stopped_because = ray_backend.run_trials(
                ledger, trials=to_run, verbose=run.verbose, on_cluster=run.address is not None,
                tick=(lambda: renew_study(study)) if spec.storage is not None else None)
        finally:
            remove_empty_trial_dirs(tune_dir(run_dir))
    if not stop.requested and not stopped_because:
        fail_unfinished(study, "the sweep ended while the trial was running")
        monitor.close_unfinished(study)
    ranked = ranked_trials(study, spec.mode)
    exports = write_exports(RunInfo.of_spec(spec), run_dir, ranked)
    apply_retention(run_dir, study, spec.mode, spec.keep_best_checkpoints)
    best = ranked[0] if ranked else None
    result = SweepResult(run_dir, run.url, time.monotonic() - run.started, first_value(best) if best else None,
                         best.number if best else None, exports,
                         interrupted=stop.exit_code if stop.requested else None, stopped_because=stopped_because)
    _closing_lines(run, study, result, finished_count(study))
    return result


def _closing_lines(run: _Session, study: optuna.Study, result: SweepResult, finished: int) -> None:
    spec, out = run.spec, run.out
    if result.interrupted is not None:
        left = max(spec.budget.trials - finished, 0)
        out.write(f"\nfinesweep: sweep {spec.name!r} stopped by {signal_name(run.stop.signum or signal.SIGINT)}: "
                  f"{finished} trials finished, {left} to go; continue with `{resume_hint(run.run_dir)}`\n")
        out.flush()
        return
    out.write(f"\nfinesweep: sweep {spec.name!r} {'stopped' if result.stopped_because else 'finished'} "
              f"in {result.seconds:.0f} s\n")
    out.write(summary_table(study, spec) + "\n")
    trials = study.get_trials(deepcopy=False)
    if run.address is not None or machines(trials) > 1:
        from finesweep.search import ray_backend  # Imported (and Ray started) by now.

        out.write(nodes_line(trials, ray_backend.node_ids()) + "\n")
    out.write(f"best config: {result.exports[0]}\n" if result.exports else "no trial completed; nothing exported\n")
    if result.stopped_because:
        out.write(f"finesweep: the sweep stopped early, since every trial would fail the same way: "
                  f"{result.stopped_because}. Fix it, then `{resume_hint(run.run_dir)}` runs the "
                  f"{max(spec.budget.trials - finished, 0)} trials not run yet (interrupted ones included)\n")
