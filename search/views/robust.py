"""`launch.py export --top-k K --reseed N`: the robust best, chosen on several seeds.

A sweep's best trial is one draw of the random initialisation and data order; a config
that won by luck rarely wins again. Each of the best K configs (:func:`search.views.results.
candidates`) is retrained for the full budget with N new seeds (through Ray, like a
sweep), and the config with the best mean validation value becomes ``best.yaml``.
Validation picks; the held-out test split is only reported beside it (mean +- sample std).
"""

from __future__ import annotations

import copy
import datetime
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from finesweep.models.run import Direction, TrainingRun, metric_split
from finesweep.search.cluster import ResourceError, check_reachable, prepare_ray_environment
from finesweep.search.run_dir import BEST_FILE, ROBUST_FILE, ROBUST_TABLE, write_atomically
from finesweep.search.run_dir.files import Fields, RunFileError
from finesweep.search.spec import MAX_SEED
from finesweep.search.trial import quiet_training_logs
from finesweep.search.user_code import add_user_folders, import_roots, prepare_recorded_configs
from finesweep.search.views.export import export_text, recorded_config, recorded_seed, write_rank
from finesweep.search.views.results import ResultsError, SweepRecord, mean_std, top_candidates, trial_value
from finesweep.search.views.retrain import train_on_workers


@dataclass(frozen=True)
class RetrainJob:
    """One retraining of one config with one seed; runs in a Ray worker."""

    trial: int
    run: TrainingRun
    threads: int = 1
    # Where the spec's own modules are imported from (see finesweep.search.user_code).
    import_roots: tuple[str, ...] = ()

    @property
    def seed(self) -> int:
        return self.run.seed


def run_job(job: RetrainJob, accelerator: str = "cpu") -> dict[str, float]:
    """Train ``job`` and return its best epoch's validation metrics and its test metrics."""
    # Imported here: torch and Lightning are slow to import.
    from finesweep.models.training import fit

    quiet_training_logs()
    add_user_folders(job.import_roots)
    result = fit(job.run, accelerator=accelerator, threads=job.threads, evaluate_test=True)
    return {**{k: float(v) for k, v in result.best.items()}, **(result.test or {}),
            "best_epoch": float(result.best_epoch), "seconds": round(result.seconds, 2)}


def _on_workers(job: RetrainJob, workers: int, cpus: float, gpus: float, run_dir: Any) -> Any:
    """:func:`run_job` as one Ray Train run of ``workers`` workers; the exception it raised, if any."""
    add_user_folders(job.import_roots)
    try:
        with tempfile.TemporaryDirectory(prefix=".reseed-", dir=run_dir) as folder:
            result = train_on_workers(job.run, workers=workers, cpus=cpus, gpus=gpus, roots=job.import_roots,
                                      checkpoint=Path(folder) / f"trial{job.trial}_seed{job.seed}.pt",
                                      storage=Path(folder) / "ray")
    except Exception as error:
        return error
    return {**{k: float(v) for k, v in result.best.items()}, **(result.test or {}),
            "best_epoch": float(result.best_epoch), "seconds": round(result.seconds, 2)}


def new_seeds(seed_base: int, trial: int, trial_seed: int, count: int) -> list[int]:
    """``count`` seeds for retraining ``trial``, derived from the sweep's seed base (so a rerun
    retrains identically) and different from the seed the trial ran with."""
    # Imported here: numpy is slow to import.
    import numpy as np

    seeds: list[int] = []
    stream = np.random.SeedSequence([seed_base, trial]).generate_state(count + 1 + 4, dtype=np.uint64)
    for value in stream:
        seed = int(value % MAX_SEED)
        if seed != trial_seed and seed not in seeds:
            seeds.append(seed)
        if len(seeds) == count:
            break
    return seeds


@dataclass
class ConfigResult:
    trial: int
    rank: int
    state: str
    sweep_value: float
    seeds: list[int]
    runs: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self, name: str) -> dict[str, Any] | None:
        values = [run[name] for run in self.runs if name in run]
        if not values:
            return None
        mean, std = mean_std(values)
        return {"mean": mean, "std": std, "values": values}


@dataclass(frozen=True)
class RobustResult:
    chosen: ConfigResult
    configs: list[ConfigResult]
    metric: str
    mode: str
    paths: list[Path]

    def text(self) -> str:
        return _markdown(self.configs, self.chosen, self.metric)


def _pm(summary: Mapping[str, Any] | None) -> str:
    if summary is None:
        return "-"
    if len(summary["values"]) < 2:  # one seed has a value, not a spread
        return f"{summary['mean']:.4f} (1 seed)"
    return f"{summary['mean']:.4f} +- {summary['std']:.4f}"


def _test_metrics(configs: Sequence[ConfigResult]) -> list[str]:
    return sorted({name for c in configs for run in c.runs for name in run if metric_split(name) == "test"})


def _markdown(configs: Sequence[ConfigResult], chosen: ConfigResult, metric: str) -> str:
    tests = _test_metrics(configs)
    header = ["rank", "trial", "sweep state", f"sweep {metric}", "seeds", f"{metric} (mean +- std)",
              *[f"{t} (mean +- std)" for t in tests], "chosen"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in configs:
        row = [str(c.rank), str(c.trial), c.state, f"{c.sweep_value:.4f}", f"{len(c.runs)}/{len(c.seeds)}",
               _pm(c.summary(metric)), *[_pm(c.summary(t)) for t in tests], "**yes**" if c is chosen else ""]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"Chosen by the best mean {metric} (validation); test is the held-out split, reported only. "
                 "std is the sample standard deviation over seeds.")
    return "\n".join(lines)


Runner = Callable[[Sequence[RetrainJob]], list[Any]]


def robust_export(record: SweepRecord, runner: Runner, *, top_k: int = 5, reseed: int = 3,
                  out_dir: Path | None = None, ship_roots: bool = True) -> RobustResult:
    """Retrain the top-k configs ``reseed`` times each with ``runner`` (one result or one
    exception per job, in order), choose the best mean validation value, and write
    ``best.yaml``, ``robust.yaml`` and ``robust.md``, and for ``top_k`` > 1 ``top/rank_NN.yaml``
    of every retrained config (as a plain ``export --top-k`` does)."""
    if record.info is None or record.run_dir is None:
        raise ResultsError("a robust export needs the sweep's run directory (its spec)")
    if reseed < 1:
        raise ResultsError(f"--reseed must be at least 1, but got {reseed}")
    info = record.info
    out_dir = Path(out_dir or record.run_dir)
    seed_base = seed_base_of(record)
    chosen_trials = top_candidates(record, top_k)
    configs, jobs = [], []
    for rank, trial in enumerate(chosen_trials, start=1):
        seeds = new_seeds(seed_base, trial.number, recorded_seed(trial), reseed)
        value = float(trial_value(trial, record.mode))
        configs.append(ConfigResult(trial.number, rank, trial.state.name, value, seeds))
        config = recorded_config(trial)
        jobs += [RetrainJob(trial.number, TrainingRun.from_config(config, max_epochs=info.max_epochs,
                                                                  seed=seed, metric=record.metric, mode=record.mode),
                            info.threads, tuple(import_roots(info.spec_dir)) if ship_roots else ())
                 for seed in seeds]
    by_trial = {c.trial: c for c in configs}
    for job, outcome in zip(jobs, runner(jobs), strict=True):
        if isinstance(outcome, BaseException):
            by_trial[job.trial].errors.append(f"seed {job.seed}: {type(outcome).__name__}: {outcome}"[:300])
        else:
            by_trial[job.trial].runs.append({"seed": float(job.seed), **outcome})
    scored = [c for c in configs if c.summary(record.metric) is not None]
    if not scored:
        reasons = "; ".join(error for c in configs for error in c.errors[:1])
        raise ResultsError(f"every retraining failed: {reasons}")
    direction = Direction(record.mode)
    chosen = min(scored, key=lambda c: (direction.sort_key(c.summary(record.metric)["mean"]), c.rank))
    paths = _write(record, out_dir, configs, chosen, chosen_trials, reseed, top_k)
    return RobustResult(chosen, configs, record.metric, record.mode, paths)


def seed_base_of(record: SweepRecord) -> int:
    """The sweep's seed base, as its study recorded it (the strategy seed, else a random one)."""
    value = record.study.user_attrs.get("seed_base", (record.info.seed if record.info else None) or 0)
    try:
        return Fields(f"study {record.study.study_name!r}").integer(value, ("user_attrs", "seed_base"), 0, MAX_SEED)
    except RunFileError as error:
        raise ResultsError(str(error)) from None


def robust_export_on_ray(record: SweepRecord, address: str | None, *, top_k: int, reseed: int,
                         out: TextIO | None = None) -> RobustResult:
    """:func:`robust_export` with every retraining a Ray task with a trial's resources, on a
    local Ray (the user's modules imported from the spec's folder) or on the cluster at
    ``address`` (the module files shipped to its nodes)."""
    if address is not None:
        check_reachable(address)  # ClusterError: one line, before anything else.
    if reseed < 1:  # Before Ray starts.
        raise ResultsError(f"--reseed must be at least 1, but got {reseed}")
    if record.info is None:
        raise ResultsError("a robust export needs the sweep's run directory (its spec)")
    info = record.info
    try:
        modules = prepare_recorded_configs([recorded_config(t) for t in top_candidates(record, top_k)], info.spec_dir)
    except (ValueError, RunFileError) as error:
        raise ResultsError(str(error)) from None
    prepare_ray_environment(address)  # Before Ray is imported: it reads these settings then.
    # Imported here: Ray is slow to import.
    from finesweep.search import ray_backend

    out = out or sys.stdout
    out.write(f"finesweep: starting Ray ({'local, 127.0.0.1' if address is None else address}); retraining the "
              f"top {top_k} configs with {reseed} new seed{'s' if reseed != 1 else ''} each\n")
    out.flush()
    ray_backend.start_ray(address, py_modules=modules)
    try:
        ray_backend.check_resources(info.cpus, info.gpus)
    except ResourceError as error:
        raise ResultsError(str(error)) from None

    def runner(jobs: Sequence[RetrainJob]) -> list[Any]:
        if info.workers > 1:  # Each retraining one Ray Train run of the sweep's workers, in turn.
            return [_on_workers(job, info.workers, info.cpus, info.gpus, record.run_dir) for job in jobs]
        return ray_backend.run_retrains(jobs, run_job, cpus=info.cpus, gpus=info.gpus,
                                        concurrency=info.concurrency)

    return robust_export(record, runner, top_k=top_k, reseed=reseed, ship_roots=address is None)


def _config_record(c: ConfigResult, tests: Sequence[str], metric: str) -> dict[str, Any]:
    return {"rank": c.rank, "trial": c.trial, "sweep_state": c.state, "sweep_value": c.sweep_value,
            "seeds": c.seeds, metric: c.summary(metric), **{t: c.summary(t) for t in tests},
            "runs": c.runs, "errors": c.errors}


def _proxy(frozen: Any, value: float) -> Any:
    """``frozen`` with ``value`` as its value: the export format (`launch.py train` reads it)
    wants one, and a PRUNED trial's is its best epoch before it was stopped."""
    proxy = copy.deepcopy(frozen)
    # The first objective's value; a trial of several objectives keeps the others as recorded.
    proxy.values = [value, *list(frozen.values or [])[1:]]
    return proxy


def _write(record: SweepRecord, out_dir: Path, configs: list[ConfigResult], chosen: ConfigResult,
           trials: Sequence[Any], reseed: int, top_k: int) -> list[Path]:
    info, metric = record.info, record.metric
    tests = _test_metrics(configs)
    robust = {"metric": metric, "mode": record.mode, "top_k": len(configs), "seeds_per_config": reseed,
              "max_epochs": info.max_epochs, "chosen_trial": chosen.trial, "chosen_rank": chosen.rank,
              "chosen_by": f"best mean {metric} over the new seeds (validation)",
              "configs": [_config_record(c, tests, metric) for c in configs],
              "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    robust_path = out_dir / ROBUST_FILE
    write_atomically(robust_path, f"# Robust best of sweep {info.name!r}: top {len(configs)} configs, "
                                  f"{reseed} new seed{'s' if reseed != 1 else ''} each.\n"
                     + yaml.safe_dump(robust, sort_keys=False))
    table_path = out_dir / ROBUST_TABLE
    write_atomically(table_path, f"# Robust best of sweep `{info.name}`\n\n"
                     + _markdown(configs, chosen, metric) + "\n")
    exported = _proxy(trials[chosen.rank - 1], chosen.sweep_value)
    summary = [f"{name} {_pm(chosen.summary(name))}" for name in (metric, *tests)]
    header = (f"# Robust best of sweep {info.name!r}: trial {chosen.trial} "
              f"(rank {chosen.rank} of the top {len(configs)} in the sweep), chosen by the best mean "
              f"{metric} over {reseed} new seed{'s' if reseed != 1 else ''} at {info.max_epochs} epochs.\n"
              f"# mean +- std over seeds: {', '.join(summary)}; every config: {robust_path.name}, {table_path.name}\n")
    best_path = out_dir / BEST_FILE
    write_atomically(best_path, header + export_text(info, record.run_dir, exported, chosen.rank,
                                                     f"Robust best of sweep {info.name!r}"))
    paths = [best_path, robust_path, table_path]
    if top_k > 1:
        # The retrained configs in their sweep order (COMPLETE and PRUNED trials by value, the
        # pool that was retrained), so rank N is the same trial in robust.md; each header adds
        # its numbers over the new seeds and says which one best.yaml holds.
        for c, frozen in zip(configs, trials, strict=True):
            numbers = ", ".join(f"{name} {_pm(c.summary(name))}" for name in (metric, *tests))
            note = (f"; mean +- std over {reseed} new seeds: {numbers}"
                    + (f"; the robust best, also {BEST_FILE}" if c is chosen else ""))
            paths.append(write_rank(info, record.run_dir, _proxy(frozen, c.sweep_value), c.rank, note, out_dir))
    return paths
