"""Where the wall time of one finesweep sweep goes: imports, Ray's start-up, the study, Tune's
start-up up to the first training step, the trials, the wrap-up.

    python -m benchmarks.sweep_timeline                       # benchmarks/overhead.yaml
    python -m benchmarks.sweep_timeline --spec spaces/x.yaml

The phases come from wrapping finesweep's own entry points in this process (nothing in
finesweep is changed) and from the first-step and end times each trial records in the study when
asked to (``FINESWEEP_RECORD_TIMING=1``, set here).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

started = time.time()
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "overhead.yaml")
    args = parser.parse_args(argv)
    marks: dict[str, float] = {}

    from finesweep.search.spec import parse_spec

    spec = parse_spec(args.spec)
    from finesweep.search.cluster import prepare_ray_environment

    prepare_ray_environment(None)  # As `launch.py sweep` does before importing Ray.
    from finesweep.search import ray_backend, sweep

    marks["finesweep and Ray imported"] = time.time()

    def timed(name: str, function):
        def wrapper(*a, **k):
            marks[f"{name} begins"] = time.time()
            try:
                return function(*a, **k)
            finally:
                marks[f"{name} ends"] = time.time()
        return wrapper

    from finesweep.search.trial import TIMING_ENV

    os.environ[TIMING_ENV] = "1"  # The trials' first-step and end times mark the trial phase.
    ray_backend.start_ray = timed("Ray start-up", ray_backend.start_ray)
    ray_backend.run_trials = timed("Tune run", ray_backend.run_trials)
    with tempfile.TemporaryDirectory(prefix="finesweep-timeline-") as tmp:
        result = sweep.run_sweep(spec, Path(tmp) / "run", out=io.StringIO())
        marks["sweep returns"] = time.time()
        import optuna

        trials = optuna.load_study(study_name=spec.name, storage=result.storage).trials
    firsts = [t.user_attrs["first_step_at"] for t in trials if t.user_attrs.get("first_step_at")]
    ends = [t.user_attrs["ended_at"] for t in trials if t.user_attrs.get("ended_at")]
    marks["first training step"], marks["last trial ends"] = min(firsts), max(ends)
    previous = started
    print(f"{'phase ends':32s} {'at s':>7s} {'phase s':>8s}")
    for name, at in sorted(marks.items(), key=lambda item: item[1]):
        print(f"{name:32s} {at - started:7.2f} {at - previous:8.2f}")
        previous = at
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
