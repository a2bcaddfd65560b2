"""What the scale benchmark (benchmarks/scale.py) measures inside one arm's driver process: timers
around the trial ledger's calls, samples of the process's and the machine's CPU and memory, and the
figures read from the finished study."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any


class DriverProbe:
    """Timers around the trial ledger's calls and a sampler of the process's CPU and memory."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.suggest: dict[int, tuple[float, float]] = {}  # number -> (wall s, thread CPU s)
        self.ledger_cpu = 0.0
        self.write_wall = 0.0
        self.ends: list[float] = []  # wall clock of each complete()
        self.rss_at: dict[int, float] = {}
        self.samples: list[tuple[float, float, float]] = []  # (time, CPU s, RSS MB)
        # (time, machine busy CPU s, machine idle CPU s, CPU s of each Ray worker process by pid)
        self.machine: list[tuple[float, float, float, dict[int, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        turn = 0
        while not self._stop.wait(0.25):
            cpu = self.process.cpu_times()
            self.samples.append((time.time(), cpu.user + cpu.system, self.process.memory_info().rss / 2**20))
            turn += 1
            if turn % 8 == 1:  # Every 2 s: the whole machine and the trial workers.
                workers = {}
                for process in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
                    line = process.info["cmdline"] or [""]
                    if line[0].startswith("ray::") and process.info["cpu_times"] is not None:
                        workers[process.info["pid"]] = process.info["cpu_times"].user + process.info["cpu_times"].system
                total = psutil.cpu_times()
                self.machine.append((time.time(), sum(total) - total.idle - total.iowait, total.idle + total.iowait,
                                     workers))

    def machine_between(self, first: float, last: float) -> tuple[float | None, float | None]:
        """The machine's busy share and the Ray worker processes' CPU seconds between two times."""
        inside = [m for m in self.machine if first <= m[0] <= last]
        if len(inside) < 2:
            return None, None
        start, end = inside[0], inside[-1]
        busy, idle = end[1] - start[1], end[2] - start[2]
        workers = sum(cpu - start[3].get(pid, 0.0) for pid, cpu in end[3].items())
        return busy / (busy + idle), workers

    def install(self) -> None:
        from finesweep.search.ledger import TrialLedger

        hand_out, record, complete = TrialLedger.hand_out, TrialLedger.record, TrialLedger.complete
        probe = self

        def timed_hand_out(ledger: Any, runner_id: str) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            handed = hand_out(ledger, runner_id)
            cpu = time.thread_time() - cpu
            probe.ledger_cpu += cpu
            if isinstance(handed, dict):
                probe.suggest[handed["number"]] = (time.perf_counter() - wall, cpu)
            return handed

        def timed_record(ledger: Any, runner_id: str, result: dict[str, Any]) -> None:
            wall, cpu = time.perf_counter(), time.thread_time()
            record(ledger, runner_id, result)
            probe.ledger_cpu += time.thread_time() - cpu
            probe.write_wall += time.perf_counter() - wall

        def timed_complete(ledger: Any, runner_id: str, *args: Any, **kwargs: Any) -> None:
            wall, cpu = time.perf_counter(), time.thread_time()
            complete(ledger, runner_id, *args, **kwargs)
            probe.ledger_cpu += time.thread_time() - cpu
            probe.write_wall += time.perf_counter() - wall
            probe.ends.append(time.time())
            if len(probe.ends) in (100, 1000) or len(probe.ends) == ledger.spec.budget.trials:
                probe.rss_at[len(probe.ends)] = probe.process.memory_info().rss / 2**20

        TrialLedger.hand_out, TrialLedger.record, TrialLedger.complete = timed_hand_out, timed_record, timed_complete
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_at(self, when: float) -> float:
        """The process's CPU seconds at wall time ``when``, interpolated between samples."""
        before = [s for s in self.samples if s[0] <= when] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= when] or self.samples[-1:]
        (t0, c0, _), (t1, c1, _) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def steady_window(timings: list[dict[str, Any]], slots: int) -> tuple[float, float]:
    """From the time all slots have started a trial to the last trial's first step, from the
    trials' :mod:`benchmarks.timing` records."""
    starts = sorted(r["first_step_at"] for r in timings)
    first, last = starts[min(slots, len(starts)) - 1], starts[-1]
    if last - first < 5.0:  # Too few trials for a steady phase: the whole run.
        first = starts[0]
        last = max(r["ended_at"] for r in timings)
    return first, last


def study_size(url: str, run_dir: Path) -> float:
    if url.startswith("sqlite"):
        return sum(p.stat().st_size for p in run_dir.glob("study.db*")) / 2**20
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20


def reference_studies(spec: Any, url: str) -> list[tuple[str, Any]]:
    """In-memory copies of the finished study, one per sampler compared: finesweep's sampler for
    the spec, and Optuna's TPESampler with `global`'s default settings (one long-lived sampler,
    as a user would)."""
    import warnings

    import optuna
    from finesweep.search.strategies import STRATEGIES
    from finesweep.search.strategies.seeding import build_sampler

    warnings.simplefilter("ignore")
    source = optuna.load_study(study_name=spec.name, storage=url)
    trials = source.get_trials(deepcopy=False)
    defaults = STRATEGIES["global"].options
    tpe = optuna.samplers.TPESampler(seed=0, **{name: defaults[name] for name in (
        "n_startup_trials", "n_ei_candidates", "multivariate", "constant_liar")})
    copies = []
    for label, sampler in (("finesweep", build_sampler(spec)), ("optuna_tpe", tpe)):
        study = optuna.create_study(direction=source.direction, sampler=sampler)
        study.add_trials(trials)
        copies.append((label, study))
    return copies


def reference_suggestions(spec: Any, url: str, count: int = 30) -> dict[str, float | None]:
    """Suggestion time on copies of the finished study (:func:`reference_studies`)."""
    out: dict[str, float | None] = {}
    for label, study in reference_studies(spec, url):
        out["history"] = float(len(study.trials))
        times = []
        for _ in range(count):
            started = time.perf_counter()
            trial = study.ask()
            spec.space.sample(trial)
            times.append(time.perf_counter() - started)
        out[f"{label}_p50"], out[f"{label}_p95"] = quantile(times, 0.5), quantile(times, 0.95)
    return out
