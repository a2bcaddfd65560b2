"""Where a suggestion's time goes on a long study: finesweep's sampler for a spec against
Optuna's TPESampler with `global`'s settings, each asked 30 times on a copy of the study, under
cProfile (the reference of benchmarks/scale.py, with its profile).

    python -m benchmarks.suggest_profile /tmp/fs-scale-XXXX     # an arm folder scale.py left

The folder holds the arm's spec.yaml and run/study.db. Prints ms per ask, each sampler's top
functions by own time and its time in Optuna's search-space calculation. Used for the notes of
benchmarks/results/scale.md.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from pathlib import Path


def main() -> None:
    import optuna
    from finesweep.search.spec import parse_spec

    from benchmarks.scale_probe import reference_studies

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(sys.argv[1])
    spec = parse_spec(folder / "spec.yaml")
    for label, study in reference_studies(spec, f"sqlite:///{folder / 'run' / 'study.db'}"):
        history = len(study.trials)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(30):
            spec.space.sample(study.ask())
        profiler.disable()
        print(f"{label}: {1000 * (time.perf_counter() - started) / 30:.1f} ms per ask, {history} trials")
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(10)
        # What differs between the two: the search space, recomputed or kept between asks.
        stats.sort_stats("cumulative").print_stats("search_space")
        print(text.getvalue())


if __name__ == "__main__":
    main()
