"""The study writes of one sweep driver, without Ray or a sampler: finesweep's SQLite storage
against Optuna's journal file storage (designed for NFS, one append per write), same calls.

    python -m benchmarks.storage_writes            # 300 trials, 64 live at once

Each trial is created with 4 parameters, gets the user attributes the driver writes when it
hands a trial out (1 call), 3 intermediate values and attributes as results arrive, and its
final attributes and state (the call pattern of search/ledger.py, from a cProfile of
benchmarks.scale). Prints driver CPU and wall ms per trial for each storage. Used for the
"what was tried" notes of benchmarks/results/scale.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

LIVE = 64
ATTRIBUTES = {"seed": 1, "ray_trial_id": "abc_00001", "config": {"lr": 0.1, "layers": 2}}


def drive(storage: optuna.storages.BaseStorage, trials: int,
          set_attrs: Callable[[optuna.storages.BaseStorage, int, dict], None]) -> tuple[float, float]:
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "writes")
    live: list[int] = []
    cpu, wall = time.process_time(), time.perf_counter()
    for number in range(trials + LIVE):
        if number < trials:
            trial_id = storage.create_new_trial(study_id)
            for index in range(4):
                storage.set_trial_param(trial_id, f"p{index}", 0.5, FloatDistribution(0.0, 1.0))
            set_attrs(storage, trial_id, {**ATTRIBUTES, "handed_out_at": time.time()})
            live.append(trial_id)
        if len(live) == LIVE or number >= trials:
            if not live:
                break
            done = live.pop(0)
            for step in range(3):
                storage.set_trial_intermediate_value(done, step, 0.1 * step)
                set_attrs(storage, done, {"epoch": step, "node_ip": "127.0.0.1"})
            set_attrs(storage, done, {"best_epoch": 2, "state_reason": None})
            storage.set_trial_state_values(done, TrialState.COMPLETE, [0.2])
    return (time.process_time() - cpu) / trials * 1000, (time.perf_counter() - wall) / trials * 1000


def one_call_per_attribute(storage: optuna.storages.BaseStorage, trial_id: int, attrs: dict) -> None:
    for key, value in attrs.items():
        storage.set_trial_user_attr(trial_id, key, value)


def main() -> None:
    from finesweep.search.study import _storage
    from finesweep.search.study.cache import DriverStorage

    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    folder = Path(tempfile.mkdtemp(prefix="fs-writes-"))
    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "journal.log")))
    arms = {
        "finesweep SQLite (DriverStorage, WAL)": (DriverStorage(_storage(f"sqlite:///{folder / 'study.db'}")),
                                                  lambda s, t, a: s.set_trial_user_attrs(t, a)),
        "Optuna JournalFileBackend": (journal, one_call_per_attribute),
    }
    for name, (storage, set_attrs) in arms.items():
        cpu, wall = drive(storage, trials, set_attrs)
        print(f"{name:40s} {cpu:6.1f} ms CPU / trial, {wall:6.1f} ms wall / trial ({trials} trials, {LIVE} live)")


if __name__ == "__main__":
    main()
