"""What keeping a trial's training state costs: each epoch a running trial writes its full
training state (weights, optimizer and scheduler state, loop counters, its best weights so far)
to its folder, owner-only, so an interrupted trial goes on from its last epoch.

    python -m benchmarks.state_cost                      # the demo's CNN, 3 configurations
    python -m benchmarks.state_cost --epochs 5 --rounds 3

Trains the demo spec's model (spaces/digits_cnn.yaml's data, at the smallest, middle and largest
network of its space) with and without the state in this process, arms alternating, and times
every state write from outside (a wrapper around the function that writes it); prints the write
time per epoch, the file's size, and the epoch time beside it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The demo's space at its ends and in its middle (the rest at the task's defaults).
NETWORKS = {"small": {"conv_layers": 1, "channels": 8, "hidden_units": 32},
            "middle": {"conv_layers": 2, "channels": 23, "hidden_units": 90},
            "large": {"conv_layers": 3, "channels": 64, "hidden_units": 256}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    from finesweep.models import training
    from finesweep.models.run import TrainingRun
    from finesweep.search.spec import parse_spec
    from finesweep.search.trial import quiet_training_logs

    quiet_training_logs()
    spec = parse_spec(ROOT / "spaces" / "digits_cnn.yaml")
    writes: list[float] = []
    original = training.save_private_checkpoint

    def timed(trainer, path):  # noqa: ANN001 - the wrapped function's own arguments
        started = time.perf_counter()
        original(trainer, path)
        writes.append(time.perf_counter() - started)

    training.save_private_checkpoint = timed
    print("| network | state MB | write ms per epoch (median) | epoch s without state (median) | "
          "epoch s with state (median) |")
    print("|---|---|---|---|---|")
    for name, network in NETWORKS.items():
        config = spec.training_config({"learning_rate": 3e-3, "optimizer": "adam", **network})
        run = TrainingRun.from_config(config, max_epochs=args.epochs, seed=0, metric=spec.metric, mode=spec.mode)
        epochs: dict[bool, list[float]] = {True: [], False: []}
        writes.clear()
        size = 0
        with tempfile.TemporaryDirectory() as folder:
            for round_number in range(args.rounds):
                for keep in ((True, False) if round_number % 2 == 0 else (False, True)):
                    state = Path(folder) / f"state-{round_number}.ckpt" if keep else None
                    result = training.fit(run, threads=1, state_path=state)
                    epochs[keep].append(result.seconds / args.epochs)
                    if state is not None:
                        size = state.stat().st_size
        print(f"| {name} ({network['conv_layers']} x {network['channels']} channels, {network['hidden_units']} hidden) "
              f"| {size / 2**20:.2f} | {1000 * statistics.median(writes):.1f} | "
              f"{statistics.median(epochs[False]):.2f} | {statistics.median(epochs[True]):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
