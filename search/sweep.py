"""A sweep from a validated spec to an exported best config: the steps, in order.

Ray is imported only here, lazily, after the spec has been validated, so a wrong spec
never pays for (or starts) Ray.
"""

from __future__ import annotations

import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml
from finesweep.search.checkpoints import apply_retention
from finesweep.search.cluster import nodes_line, trials_per_node
from finesweep.search.export import write_exports
from finesweep.search.progress import SweepMonitor, summary_table
from finesweep.search.spec import SweepSpec
from finesweep.search.strategies import make_sampler
from finesweep.search.study import describe_storage, fail_unfinished, open_study, ranked_trials, storage_url
from finesweep.search.tensorboard_log import HParamsLog
from finesweep.search.trial import clear_trial_outputs
from finesweep.search.user_code import class_paths_in

SPEC_COPY = "spec.yaml"


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
    # Why the sweep stopped before its budget: every trial would have failed the same way.
    stopped_because: str | None = None


DATA_SUMMARY = "data.txt"


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


def _write_atomically(path: Path, text: str) -> None:
    # A driver killed mid-write must not leave a half spec behind: write, then rename.
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(text)
    partial.replace(path)


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
    changes = compare_specs(parse_spec(stored), spec)
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


def run_sweep(spec: SweepSpec, run_dir: Path, *, address: str | None = None, verbose: bool = False,
              resume: bool = False, out: TextIO | None = None) -> SweepResult:
    from finesweep.search.resume import finished_count, interrupted_trials

    out = out or sys.stdout
    started = time.monotonic()
    url = storage_url(spec.storage, run_dir)
    accepted_changes = _check_resume(spec, run_dir, resume)

    from finesweep.search import ray_backend  # Ray's import and start-up come after validation.

    out.write(f"finesweep: starting Ray ({'local, 127.0.0.1' if address is None else address})\n")
    ray_backend.start_ray(address, verbose=verbose, spec_dir=spec.base_dir,
                          class_paths=class_paths_in(spec.training_config({})))
    try:
        ray_backend.check_resources(spec.resources.cpus, spec.resources.gpus)
    except ray_backend.ResourceError as error:
        raise SweepError(str(error)) from None

    sampler = build_sampler(spec)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        study = _open_fresh_or_resumed(spec, url, sampler, resume)
    except SweepError:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    from finesweep.search.spec import SPEC_DIR_RECORD

    _write_atomically(run_dir / SPEC_COPY, f"{SPEC_DIR_RECORD}{spec.base_dir}\n"
                      + yaml.safe_dump(dict(spec.raw), sort_keys=False))
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
        _write_atomically(run_dir / DATA_SUMMARY, summary + "\n")
    hparams = HParamsLog(run_dir / "tensorboard", spec.space, spec.metric)
    hparams.write_experiment()
    to_run = max(spec.budget.trials - done, 0)
    stopped_because = None
    monitor = SweepMonitor(spec, spec.budget.trials, hparams, out, already_done=done)
    best_so_far = ranked_trials(study, spec.mode)
    if best_so_far:
        monitor.best = (best_so_far[0].value, best_so_far[0].number)
    if to_run:
        out.write(f"finesweep: sweep {spec.name!r}: {to_run} trials of {spec.task_label}, "
                  f"strategy {spec.strategy.name}, scheduler {spec.scheduler.name}, "
                  f"{spec.resources.concurrency} at a time; study in {describe_storage(url)}\n")
        out.flush()
        stopped_because = ray_backend.run_trials(spec, study, run_dir, trials=to_run, seed_base=seed_base,
                                                 monitor=monitor, rerun=rerun, verbose=verbose,
                                                 on_cluster=address is not None)
    fail_unfinished(study, "the sweep ended while the trial was running")
    monitor.close_unfinished(study)
    ranked = ranked_trials(study, spec.mode)
    exports = write_exports(spec, run_dir, ranked)
    apply_retention(run_dir, study, spec.mode, spec.keep_best_checkpoints)
    seconds = time.monotonic() - started
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
    best = ranked[0] if ranked else None
    return SweepResult(run_dir, url, seconds, best.value if best else None,
                       best.number if best else None, exports, stopped_because)
