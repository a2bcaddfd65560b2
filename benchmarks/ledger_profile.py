"""The sweep driver's own cost without Ray: the trial ledger driven with scripted results, 64
trials live at once, on a SQLite study (WAL) or a storage URL, under cProfile.

    python -m benchmarks.ledger_profile 300 global          # trials, strategy
    python -m benchmarks.ledger_profile 300 random postgresql://user@127.0.0.1/db

Each trial is handed out, reports 3 epochs through ``record`` and its 4th through ``complete``
(as Ray Tune hands the last one), with the benchmark timings on; prints CPU and wall ms per
trial, the process's memory at trials 100 and 1,000 (the ledger's share of the driver's growth,
cProfile included) and the profile's top functions by cumulative time. Used for benchmarks/results/scale.md.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.scale import SPEC


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    strategy = sys.argv[2] if len(sys.argv) > 2 else "global"
    folder = Path(tempfile.mkdtemp(prefix="fs-ledger-"))
    (folder / "spec.yaml").write_text(SPEC.format(name="ledger", strategy=strategy, trials=trials, epochs=4,
                                                  epoch_seconds=0, concurrency=64, scheduler="none", storage="",
                                                  timings=folder / "timings"))
    from finesweep.search.ledger import TrialLedger
    from finesweep.search.spec import parse_spec
    from finesweep.search.strategies.seeding import build_sampler
    from finesweep.search.study import open_study

    spec = parse_spec(folder / "spec.yaml")
    url = sys.argv[3] if len(sys.argv) > 3 else f"sqlite:///{folder / 'study.db'}"
    ledger = TrialLedger(open_study(spec, url, build_sampler(spec)), spec, 0, folder)
    live: list[str] = []
    handed = 0

    import psutil

    process, rss_at = psutil.Process(), {}

    def hand_out() -> None:
        nonlocal handed
        ledger.hand_out(f"r{handed}")
        live.append(f"r{handed}")
        handed += 1
        if handed in (100, 1000):  # The driver memory points of benchmarks/scale.py.
            rss_at[handed] = process.memory_info().rss / 2**20

    profiler = cProfile.Profile()
    cpu, wall = time.process_time(), time.perf_counter()
    profiler.enable()
    for _ in range(min(64, trials)):
        hand_out()
    while live:
        runner = live.pop(0)
        for epoch in range(1, 5):
            result = {"val_loss": 1.0 / epoch, "val_acc": 0.5, "epoch": epoch, "best_value": 1.0 / epoch,
                      "best_epoch": epoch, "node_id": "n1", "node_ip": "127.0.0.1", "gpu_ids": [],
                      "accelerator": "cpu"}
            if epoch < 4:
                ledger.record(runner, result)
        ledger.complete(runner, result)
        if handed < trials:
            hand_out()
    profiler.disable()
    print(f"{strategy}, {trials} trials: CPU {1000 * (time.process_time() - cpu) / trials:.1f} ms/trial, "
          f"wall {1000 * (time.perf_counter() - wall) / trials:.1f} ms/trial; RSS MB at trials handed out "
          + ", ".join(f"{n}: {mb:.1f}" for n, mb in rss_at.items()))
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
