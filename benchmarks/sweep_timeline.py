"""Where the wall time of one finesweep sweep goes: imports, Ray's start-up, the study, Tune's
start-up up to the first training step, the trials, the wrap-up.

    python -m benchmarks.sweep_timeline                       # benchmarks/overhead.yaml
    python -m benchmarks.sweep_timeline --spec spaces/x.yaml

The phases come from wrapping finesweep's own entry points in this process (nothing in
finesweep is changed) and from the first-step and end times each trial's
:class:`benchmarks.timing.TrialTiming` callback records (added to the spec's
``trainer.callbacks`` here, as a user would add one).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
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

    import yaml
    from finesweep.search.spec import parse_spec

    from benchmarks.timing import read_timings, with_timing

    tmp = Path(tempfile.mkdtemp(prefix="finesweep-timeline-"))
    timings = tmp / "timings"
    # Beside the given spec (its relative paths stay right), removed at the end.
    timed_spec = args.spec.with_name(f".{args.spec.stem}-timeline-{os.getpid()}.yaml")
    timed_spec.write_text(yaml.safe_dump(with_timing(yaml.safe_load(args.spec.read_text()), timings)))
    try:
        spec = parse_spec(timed_spec)
    finally:
        timed_spec.unlink()
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

    ray_backend.start_ray = timed("Ray start-up", ray_backend.start_ray)
    ray_backend.run_trials = timed("Tune run", ray_backend.run_trials)
    try:
        sweep.run_sweep(spec, tmp / "run", out=io.StringIO())
        marks["sweep returns"] = time.time()
        records = read_timings(timings, drivers=(os.getpid(),))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    firsts = [r["first_step_at"] for r in records]
    ends = [r["ended_at"] for r in records]
    marks["first training step"], marks["last trial ends"] = min(firsts), max(ends)
    previous = started
    print(f"{'phase ends':32s} {'at s':>7s} {'phase s':>8s}")
    for name, at in sorted(marks.items(), key=lambda item: item[1]):
        print(f"{name:32s} {at - started:7.2f} {at - previous:8.2f}")
        previous = at
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
