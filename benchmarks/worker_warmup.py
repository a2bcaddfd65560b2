"""Can a Ray Tune trial start in a worker that has already imported torch and Lightning?

Ray can import modules in the worker processes it prestarts (its ``preload_python_modules``
setting, ``RAY_preload_python_modules``). This starts a local Ray with or without that, waits
until the prestarted workers are idle, runs one Tune trial that reports its pid and whether
Lightning was already imported, and prints the seconds from ``Tuner.fit()`` to that report and
whether the trial ran in a prestarted worker.

    python -m benchmarks.worker_warmup            # both, each in a fresh process
    python -m benchmarks.worker_warmup --preload  # one arm in this process
    python -m benchmarks.worker_warmup --task     # a task with Tune's runtime environment warms a worker first

Then the same with a plain Ray actor, on a fresh Ray. Measured 2026-12-06 (2 cores, load 2.4):
the Tune trial's first report came 1.94 s after fit() without the preload and 5.17 s with it, in
neither arm in a prestarted worker; the plain actor answered in 0.20 s and 0.10 s, in both arms in
a prestarted worker (with the preload, with Lightning already imported). Tune gives its trial actors
a runtime environment of their own (environment variables such as PL_DISABLE_FORK, in
ray/tune/execution/class_cache.py), which the prestarted default workers do not match, so Ray
starts a worker for each trial; with the preload that worker imports Lightning before the trial.
Nor does a worker warmed by a task given Tune's own runtime environment ({'env_vars':
{'PL_DISABLE_FORK': '1'}}) serve the trial once idle (``--task``, 2026-12-06, load ~3): the trial
ran in a new worker, first report 2.77 s after fit(), Lightning not imported before it: Ray did
not hand the new actor the idle worker that had run a task.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time

MODULES = "torch,pytorch_lightning"


def _report(config: dict) -> None:
    from ray import tune

    tune.report({"pid": os.getpid(), "lightning_imported": "pytorch_lightning" in sys.modules,
                 "at": time.time()})


def arm(preload: bool) -> None:
    if preload:
        os.environ["RAY_preload_python_modules"] = MODULES  # Read by the raylet Ray starts below.
    import psutil
    import ray

    _fresh_ray()
    time.sleep(10)  # The prestarted workers finish their imports (and preload) and go idle.
    prestarted = {p.pid for p in psutil.Process().children(recursive=True)}
    result, began = _one_trial()
    print(f"preload {MODULES if preload else 'none':24s} Tune trial: first report {result['at'] - began:5.2f} s "
          f"after fit(); in a prestarted worker: {result['pid'] in prestarted}; "
          f"Lightning imported before it: {result['lightning_imported']}")
    # The contrast: a plain actor (no runtime environment of its own), on a fresh Ray.
    ray.shutdown()
    _fresh_ray()
    time.sleep(10)
    prestarted = {p.pid for p in psutil.Process().children(recursive=True)}
    began = time.time()
    pid, imported = ray.get(ray.remote(_Probe).remote().where.remote())
    print(f"preload {MODULES if preload else 'none':24s} plain actor: answered {time.time() - began:5.2f} s after "
          f"its creation; in a prestarted worker: {pid in prestarted}; Lightning imported before it: {imported}")
    ray.shutdown()


def _fresh_ray() -> None:
    """A local Ray of one CPU, quiet: one trial or actor at a time."""
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)


def _one_trial() -> tuple[dict, float]:
    """One Tune trial of ``_report``: its metrics and when ``fit()`` was called."""
    from ray import tune

    began = time.time()
    with tempfile.TemporaryDirectory() as storage:
        result = tune.Tuner(_report, run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()[0].metrics
    return result, began


def _warm() -> int:
    import pytorch_lightning  # noqa: F401 - the import is the warm-up

    return os.getpid()


def task_arm() -> None:
    """A task given the runtime environment Tune gives its trainables imports Lightning, then a
    Tune trial starts: does Ray hand the trial that idle, warmed worker?"""
    import ray
    from ray.tune.execution.class_cache import _ActorClassCache  # private: Tune's trainable options

    _fresh_ray()
    runtime_env = _ActorClassCache().get(_Probe)._default_options["runtime_env"]
    warmed = ray.get(ray.remote(runtime_env=runtime_env)(_warm).remote())
    time.sleep(1)  # The task's worker is idle again.
    result, began = _one_trial()
    print(f"task warm-up with {runtime_env} Tune trial: first report {result['at'] - began:5.2f} s after fit(); "
          f"in the warmed worker: {result['pid'] == warmed}; Lightning imported before it: "
          f"{result['lightning_imported']}")
    ray.shutdown()


class _Probe:
    def where(self) -> tuple[int, bool]:
        return os.getpid(), "pytorch_lightning" in sys.modules


def main() -> None:
    if len(sys.argv) > 1:
        task_arm() if sys.argv[1] == "--task" else arm(sys.argv[1] == "--preload")
        return
    for flag in ("--none", "--preload", "--task"):
        subprocess.run([sys.executable, "-m", "benchmarks.worker_warmup", flag], check=True)


if __name__ == "__main__":
    main()
