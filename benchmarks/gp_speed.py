"""Seconds per GP suggestion up to 100 trials in 10 dimensions: `global`'s GP against Optuna's GPSampler.

    python -m benchmarks.gp_speed                  # 100 trials, Sum-Squares-10, both arms
    python -m benchmarks.gp_speed --trials 60

`global` (and `auto` on expensive trials) hands its suggestions to Optuna's GPSampler once a
suggestion costs at most 5% of a trial. Here every trial is recorded as taking 600 s, so it does
from the 9th trial on. `global` is built as a seeded sweep builds it: afresh for every trial
(search/strategies/seeding.py), so nothing is cached between suggestions; Optuna's GPSampler is built
once. Prints the wall-clock and the process CPU seconds of each suggestion (torch may use both
cores) after 50 and up to the last trial: the target is under 2 s wall-clock on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import optuna

from benchmarks.functions import FUNCTIONS
from benchmarks.strategies import quiet, run

# Long enough that `global`'s rule (a suggestion <= 5% of a trial) keeps the GP on for every
# trial here: with 60 s trials, one slow first suggestion under load (over 3 s, measured) turns
# it off for the rest of the sweep, and nothing would be timed.
TRIAL_SECONDS = 600.0


def timed_asks(sampler: optuna.samplers.BaseSampler, trials: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each ask, with every trial recorded as TRIAL_SECONDS long."""
    function = FUNCTIONS["Sum-Squares-10"]
    study = optuna.create_study(sampler=sampler)
    seconds = []
    original_ask = study.ask

    def ask(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        trial = original_ask(*args, **kwargs)
        function.space.sample(trial)  # Optuna samples on the first suggest: timed here.
        seconds.append((time.perf_counter() - wall, time.process_time() - cpu))
        return trial

    study.ask = ask  # type: ignore[method-assign]
    run(study, function, trials, seed=0, trial_seconds=TRIAL_SECONDS)
    return seconds


def main(argv: list[str] | None = None) -> None:
    from finesweep.search.strategies import make_sampler
    from finesweep.search.strategies.seeding import PerTrialSeededSampler

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args(argv)
    quiet()
    space = FUNCTIONS["Sum-Squares-10"].space
    arms = {
        "global (rebuilt per trial, as a sweep does)":
            PerTrialSeededSampler(lambda seed: make_sampler("global", space, {}, seed), 0),
        "optuna GPSampler()": optuna.samplers.GPSampler(seed=0),
    }
    print(f"load average {os.getloadavg()[0]:.1f}; torch threads: default")
    for name, sampler in arms.items():
        study_seconds = timed_asks(sampler, args.trials)
        seconds = study_seconds[10:]  # After the start-up trials.
        wall = np.array([w for w, _ in seconds])
        cpu = np.array([c for _, c in seconds])
        late = wall[-(args.trials // 2):]
        print(f"{name}: wall median {np.median(wall):.2f} s, max {wall.max():.2f} s (max over the last "
              f"{len(late)}: {late.max():.2f} s); CPU median {np.median(cpu):.2f} s, max {cpu.max():.2f} s")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
