"""A sweep from a validated spec to an exported best config: the steps, in order.

Ray is imported only here, lazily, after the spec has been validated, so a wrong spec
never pays for (or starts) Ray.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml

from search.export import write_exports
from search.progress import SweepMonitor, summary_table
from search.spec import SweepSpec
from search.strategies import make_sampler
from search.study import describe_storage, fail_unfinished, open_study, ranked_trials, storage_url
from search.tensorboard_log import HParamsLog

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


def default_run_dir(spec: SweepSpec) -> Path:
    return Path("runs") / spec.name


def run_sweep(spec: SweepSpec, run_dir: Path, *, address: str | None = None, verbose: bool = False,
              out: TextIO | None = None) -> SweepResult:
    out = out or sys.stdout
    started = time.monotonic()
    url = storage_url(spec.storage, run_dir)
    if (run_dir / SPEC_COPY).exists():
        raise SweepError(f"{run_dir} already holds a sweep; choose another --out or remove it")

    from search import ray_backend  # Ray's import and start-up come after validation.

    out.write(f"finesweep: starting Ray ({'local, 127.0.0.1' if address is None else address})\n")
    ray_backend.start_ray(address, verbose=verbose)
    try:
        ray_backend.check_resources(spec.resources.cpus, spec.resources.gpus)
    except ray_backend.ResourceError as error:
        raise SweepError(str(error)) from None

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SPEC_COPY).write_text(yaml.safe_dump(dict(spec.raw), sort_keys=False))
    sampler = make_sampler(spec.strategy.name, spec.space, spec.strategy.options, spec.strategy.seed)
    study = open_study(spec, url, sampler)
    # Trial seeds derive from the strategy seed, so a seeded sweep retrains identically.
    seed_base = spec.strategy.seed if spec.strategy.seed is not None else random.randrange(1, 2**30)
    study.set_user_attr("seed_base", seed_base)
    hparams = HParamsLog(run_dir / "tensorboard", spec.space, spec.metric)
    hparams.write_experiment()
    monitor = SweepMonitor(spec, spec.budget.trials, hparams, out)
    out.write(f"finesweep: sweep {spec.name!r}: {spec.budget.trials} trials of {spec.task.name}, "
              f"strategy {spec.strategy.name}, scheduler {spec.scheduler.name}, "
              f"{spec.resources.concurrency} at a time; study in {describe_storage(url)}\n")
    out.flush()
    ray_backend.run_trials(spec, study, run_dir, trials=spec.budget.trials, seed_base=seed_base,
                           monitor=monitor, verbose=verbose)
    fail_unfinished(study, "the sweep ended while the trial was running")
    ranked = ranked_trials(study, spec.mode)
    exports = write_exports(spec, run_dir, ranked)
    seconds = time.monotonic() - started
    out.write(f"\nfinesweep: sweep {spec.name!r} finished in {seconds:.0f} s\n")
    out.write(summary_table(study, spec) + "\n")
    if exports:
        out.write(f"best config: {exports[0]}\n")
    else:
        out.write("no trial completed; nothing exported\n")
    best = ranked[0] if ranked else None
    return SweepResult(run_dir, url, seconds, best.value if best else None,
                       best.number if best else None, exports)
