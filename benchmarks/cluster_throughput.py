"""Trial throughput of one sweep on a Ray cluster of 1 worker node vs 2 (README figure).

Both clusters run on this machine, started with the `ray` CLI as the README shows
(tests/ray_nodes.py): a head with no CPUs for trials plus N worker nodes of 1 CPU each, each
node its own raylet and workers. The same seeded sweep (task `debug`, 2 trials at a time) joins each cluster with
`launch.py sweep --address`; throughput is finished trials per minute from the first trial's
first training step to the last trial's end, recorded by the benchmark's Lightning callback
(benchmarks/timing.py, in the spec's ``trainer.callbacks``; so Ray's and the driver's
start-up are left out; each node's worker start-up, torch import included, is not).

    python benchmarks/cluster_throughput.py            # prints both rates and their ratio
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = """
name: throughput
task: debug
metric: val_acc
space:
  learning_rate: {{type: float, low: 0.01, high: 0.5, log: true}}
  epoch_seconds: {epoch_seconds}
strategy: {{name: random, seed: 0}}
scheduler: none
budget: {{trials: {trials}, max_epochs: 3}}
resources: {{cpus: 1, concurrency: 2}}
trainer:
  callbacks: [{{class_path: benchmarks.timing.TrialTiming, init_args: {{folder: {timings}}}}}]
"""


def measure(workers: int, trials: int, epoch_seconds: float) -> float:
    """Finished trials per minute of one sweep on a cluster of ``workers`` 1-CPU nodes."""
    import optuna

    from benchmarks.timing import read_timings
    from tests import ray_nodes

    folder = Path(tempfile.mkdtemp(prefix="fs-tp-", dir="/tmp"))
    try:
        with ray_nodes.cluster(folder / "cluster", head_cpus=0, workers=[{"cpus": 1}] * workers) as cluster:
            spec = folder / "spec.yaml"
            spec.write_text(SPEC.format(trials=trials, epoch_seconds=epoch_seconds, timings=folder / "timings"))
            run_dir = folder / "run"
            # The trials' first-step and end times (their TrialTiming records) bound the measured span.
            driver = subprocess.Popen([sys.executable, "launch.py", "sweep", str(spec), "--out", str(run_dir),
                                       "--address", cluster.address], cwd=ROOT, stdout=subprocess.DEVNULL,
                                      env=cluster.env)
            if driver.wait() != 0:
                raise RuntimeError(f"the sweep exited {driver.returncode}")
        study = optuna.load_study(study_name="throughput", storage=f"sqlite:///{run_dir / 'study.db'}")
        done = [t for t in study.trials if t.datetime_complete is not None]
        timings = read_timings(folder / "timings", drivers=(driver.pid,))
        span = max(r["ended_at"] for r in timings) - min(r["first_step_at"] for r in timings)
        return 60.0 * len(done) / span
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epoch-seconds", type=float, default=1.0)
    args = parser.parse_args()
    one = measure(1, args.trials, args.epoch_seconds)
    two = measure(2, args.trials, args.epoch_seconds)
    print(f"1 worker node: {one:.1f} trials/min; 2 worker nodes: {two:.1f} trials/min; ratio {two / one:.2f}")


if __name__ == "__main__":
    main()
