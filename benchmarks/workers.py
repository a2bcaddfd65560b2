"""Epoch time of one trial on 1 and on 2 workers, and the fixed cost of a multi-worker trial.

The digits CNN (the image_classification task, 3 blocks from 128 channels, batch 64 per worker)
trained for 1 and for ``--long`` (5) epochs: in one process as a one-worker trial trains
(``models.training.fit``), and as one Ray Train run of 2 workers with 1 CPU each
(``ray_backend.fit_on_workers``, gloo). From outside, by wall time only: an epoch is
(T(long) - T(1)) / (long - 1), the fixed cost T(1) - one epoch (building the model and data, and
for 2 workers starting Ray Train's controller and worker processes, the process group, and their
imports). Ray's own start-up is left out: a sweep pays it once.

    python -m benchmarks.workers            # prints a Markdown table
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from finesweep.models.run import TrainingRun

CONFIG = {"model": {"class_path": "finesweep.models.image_classification.ImageClassifier",
                    "init_args": {"conv_layers": 3, "channels": 128, "hidden_units": 512, "dropout": 0.0}},
          "data": {"class_path": "finesweep.models.image_classification.DigitsData",
                   "init_args": {"batch_size": 64}},
          "trainer": {}}


def _run(epochs: int) -> TrainingRun:
    return TrainingRun.from_config(CONFIG, max_epochs=epochs, seed=0, metric="val_acc", mode="max")


def one_worker(epochs: int, folder: Path) -> float:
    from finesweep.models.training import fit

    started = time.perf_counter()
    fit(_run(epochs), checkpoint_path=folder / f"one_{epochs}.pt", threads=1)
    return time.perf_counter() - started


def two_workers(epochs: int, folder: Path) -> float:
    from finesweep.search import ray_backend

    started = time.perf_counter()
    ray_backend.fit_on_workers(_run(epochs), workers=2, cpus=1, checkpoint_path=str(folder / f"two_{epochs}.pt"),
                               storage=str(folder / "ray"), name=f"bench_{epochs}_{time.time_ns()}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--long", type=int, default=5, help="epochs of the longer run")
    args = parser.parse_args()
    from finesweep.search.cluster import prepare_ray_environment

    prepare_ray_environment(None)
    from finesweep.search import ray_backend
    from finesweep.search.trial import quiet_training_logs

    quiet_training_logs()
    ray_backend.start_ray(None)
    rows = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        runs = (("1 worker (in the trial's process)", one_worker), ("2 workers (Ray Train, gloo)", two_workers))
        for label, train in runs:
            for _ in range(args.repeats):
                short, long = train(1, folder), train(args.long, folder)
                epoch = (long - short) / (args.long - 1)
                rows.append((label, epoch, short - epoch, os.getloadavg()[0]))
    print("| run | epoch (s) | fixed cost (s) | load (1 min) |\n|---|---|---|---|")
    for label, epoch, fixed, load in rows:
        print(f"| {label} | {epoch:.2f} | {fixed:.2f} | {load:.1f} |")


if __name__ == "__main__":
    main()
