"""Record real learning curves of the digits CNN for the replay benchmark (benchmarks/replay.py).

    nice -n 19 python -m benchmarks.record_curves              # the whole grid, 2 seeds; goes on where it stopped
    python -m benchmarks.record_curves --limit 20              # at most 20 more runs, then stop
    python -m benchmarks.record_curves --compact               # only rewrite the table as one gzip member

Every configuration of a discretised space (learning rate, optimizer, weight decay, depth,
width, dropout: 1,134 configurations) is trained for 20 epochs with 2 seeds through finesweep's
own training loop (:func:`finesweep.models.training.fit`, the built-in ``ImageClassifier`` on
``DigitsData``, one thread), and each epoch's ``val_acc``, ``val_loss`` and wall time are
appended to benchmarks/data/digits_curves.jsonl.gz (format: :mod:`benchmarks.curves`).
The configurations run in a fixed shuffled order, both seeds together, so a recording stopped
early still covers the space evenly; a rerun skips the runs already in the file.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import itertools
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import curves

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "benchmarks" / "data" / "digits_curves.jsonl.gz"
COMMAND = "nice -n 19 python -m benchmarks.record_curves"

MODEL = "finesweep.models.image_classification.ImageClassifier"
DATA = "finesweep.models.image_classification.DigitsData"
# The searched values: half-decades of learning rate, from too small for SGD to too large for Adam.
GRID: dict[str, list[Any]] = {
    "learning_rate": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    "optimizer": ["adam", "sgd"],
    "weight_decay": [1e-5, 1e-3, 1e-2],
    "conv_layers": [1, 2, 3],
    "channels": [8, 16, 32],
    "dropout": [0.0, 0.25, 0.5],
}
# Everything else as the demo spec (spaces/digits_cnn.yaml) fixes it or the task defaults it.
FIXED_MODEL: dict[str, Any] = {"kernel_size": 3, "normalization": "batch", "activation": "relu",
                               "hidden_units": 128, "lr_schedule": "cosine", "momentum": 0.9}
FIXED_DATA: dict[str, Any] = {"val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0, "batch_size": 64}
EPOCHS = 20
SEEDS = (0, 1)
METRICS = {"val_acc": "max", "val_loss": "min"}


def configurations() -> list[dict[str, Any]]:
    """Every point of the grid, in the fixed shuffled order the recorder follows."""
    points = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    random.Random(0).shuffle(points)
    return points


def header() -> dict[str, Any]:
    names = ("torch", "pytorch-lightning", "scikit-learn")
    return {
        "task": "image_classification",
        "model": {"class_path": MODEL, "init_args": FIXED_MODEL},
        "data": {"class_path": DATA, "init_args": FIXED_DATA},
        "grid": GRID, "epochs": EPOCHS, "seeds": list(SEEDS), "metrics": METRICS,
        "recorded_with": COMMAND, "started": datetime.date.today().isoformat(),
        "versions": {"python": platform.python_version(),
                     **{n: importlib.metadata.version(n) for n in names}},
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, one thread per run",
    }


def record_one(params: dict[str, Any], seed: int) -> curves.RecordedRun:
    """Train one configuration with one seed; its per-epoch metrics and epoch times."""
    from finesweep.models.run import TrainingRun
    from finesweep.models.training import fit

    from benchmarks.timing import TrialTiming, with_callback

    run = TrainingRun(model={"class_path": MODEL, "init_args": {**FIXED_MODEL, **params}},
                      data={"class_path": DATA, "init_args": FIXED_DATA}, trainer={},
                      max_epochs=EPOCHS, seed=seed, metric="val_acc", mode="max")
    values: dict[str, list[float]] = {name: [] for name in METRICS}
    # Epoch k's time runs from the end of epoch k-1 (for epoch 1, the first optimizer step:
    # building the model and loading the data are not an epoch's work).
    marks: list[float] = []
    error = None

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        marks.append(time.time())
        for name in METRICS:
            values[name].append(round(metrics[name], 5))

    timing = TrialTiming()
    try:
        fit(with_callback(run, timing), on_epoch_end=on_epoch_end, threads=1)
    except Exception as failure:  # Recorded as it happened: a replayed trial fails there too.
        error = f"{type(failure).__name__}: {failure}"[:300]
    if "first_step_at" in timing.record:
        marks.insert(0, timing.record["first_step_at"])
    seconds = [round(b - a, 4) for a, b in itertools.pairwise(marks)]
    return curves.RecordedRun(params, seed, values, seconds, error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=TABLE)
    parser.add_argument("--limit", type=int, default=None, help="record at most this many runs, then stop")
    parser.add_argument("--compact", action="store_true", help="only rewrite the table as one gzip member")
    args = parser.parse_args(argv)
    if args.compact:
        curves.compact(args.out)
        return 0
    from finesweep.search.trial import quiet_training_logs

    quiet_training_logs()
    if not args.out.exists():
        curves.start_table(args.out, header())
    existing, runs = curves.read_curves(args.out)
    if existing.get("grid") != GRID or existing.get("epochs") != EPOCHS:
        print(f"{args.out} was recorded over another grid or epoch count; record into a new --out", file=sys.stderr)
        return 2
    done = {(curves.config_key(r.params), r.seed) for r in runs}
    todo = [(p, s) for p in configurations() for s in SEEDS if (curves.config_key(p), s) not in done]
    total = len(configurations()) * len(SEEDS)
    print(f"{len(done)} of {total} runs recorded; {len(todo)} to go", flush=True)
    started = time.time()
    for count, (params, seed) in enumerate(todo[:args.limit], start=1):
        curves.append_run(args.out, record_one(params, seed))
        if count % 20 == 0:
            rate = (time.time() - started) / count
            print(f"{len(done) + count} of {total} runs; {rate:.1f} s per run", flush=True)
    if len(todo) <= (args.limit or len(todo)):
        curves.compact(args.out)
        print(f"all {total} runs recorded; {args.out} compacted", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
