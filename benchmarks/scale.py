"""What one sweep driver sustains: many simulated trials at once, measured from outside the driver.

    python -m benchmarks.scale     # all 6 arms on SQLite, global and random+asha on PostgreSQL too
    python -m benchmarks.scale --trials 200 --arms random,global+asha --storages sqlite --no-write
    python -m benchmarks.scale --profile global      # cProfile of one arm's driver (prints the top)

A loopback Ray cluster (benchmarks/loopback_cluster.py) declares ``--concurrency`` logical CPUs
(64), so 64 trials of one CPU each run at once on this 2-core machine. Each trial is the
synthetic simulated task of benchmarks/scale_task.py (a learning curve, ``--epoch-seconds`` of
sleep per epoch, no torch, no Lightning). Each arm (strategy, with or without ASHA, on SQLite or
PostgreSQL) is one `run_sweep` in a child process; the child wraps the trial ledger's three calls
(hand_out, record, complete) with timers and samples its own CPU and memory, so the production
code is measured as it is. Trials record their worker-side timings (FINESWEEP_RECORD_TIMING=1).

Figures per arm:
- ends/s: trials told to the study per second in the steady window (from the time all slots
  have started a trial to the last trial's first step);
- driver CPU ms/trial: the driver process's CPU (all its threads: Tune's loop, Ray's core
  worker, the ledger) in that window / trials ended in it; "ledger" is the part spent inside the
  ledger's calls (thread CPU);
- suggestion ms: wall time of hand_out (ask, sampling, recording the config) for trials in
  (0.9 N, N], N = 10, 100, 1000;
- idle slot share: 1 - (trial-busy time, first step to last report, summed) / (slots x window);
- memory: the driver's RSS when trial 100 and when the last trial was told;
- study size: the SQLite file (with its WAL) or the PostgreSQL database; write ms/trial: wall
  time of the ledger's record and complete calls per trial;
- for `global`: after the sweep, suggestion p95 on a copy of its study (1,000 trials) of
  finesweep's sampler vs Optuna's TPESampler with the same settings.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.md"
PLOT = ROOT / "benchmarks" / "results" / "scale.png"
ARMS = ("global", "global+asha", "auto", "auto+asha", "random", "random+asha")

SPEC = """
name: {name}
model: {{class_path: benchmarks.scale_task.CurveModel}}
data: {{class_path: benchmarks.scale_task.CurveData, init_args: {{epoch_seconds: {epoch_seconds}}}}}
metric: val_loss
mode: min
space:
  model.lr: {{type: float, low: 1.0e-4, high: 1.0e-1, log: true}}
  model.width: {{type: int, low: 16, high: 512, log: true}}
  model.dropout: {{type: float, low: 0.0, high: 0.5}}
  model.optimizer: {{type: categorical, choices: [adam, sgd]}}
strategy: {{name: {strategy}, seed: 0}}
scheduler: {scheduler}
budget: {{trials: {trials}, max_epochs: {epochs}}}
resources: {{cpus: 1, concurrency: {concurrency}}}
{storage}
"""


# --------------------------------------------------------------------------- one arm (child)


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


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _steady_window(trials: list[Any], slots: int) -> tuple[float, float]:
    starts = sorted(t.user_attrs["first_step_at"] for t in trials if "first_step_at" in t.user_attrs)
    first, last = starts[min(slots, len(starts)) - 1], starts[-1]
    if last - first < 5.0:  # Too few trials for a steady phase: the whole run.
        first = starts[0]
        last = max(t.user_attrs.get("ended_at", first) for t in trials)
    return first, last


def _study_size(url: str, run_dir: Path) -> float:
    if url.startswith("sqlite"):
        return sum(p.stat().st_size for p in run_dir.glob("study.db*")) / 2**20
    import psycopg

    with psycopg.connect(url) as connection:
        return connection.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20


def _reference_suggestions(spec: Any, url: str, count: int = 30) -> dict[str, float | None]:
    """Suggestion time on a copy of the finished study: finesweep's sampler for the spec vs
    Optuna's TPESampler with `global`'s settings (one long-lived sampler, as a user would)."""
    import warnings

    import optuna
    from finesweep.search.sweep import build_sampler

    warnings.simplefilter("ignore")
    source = optuna.load_study(study_name=spec.name, storage=url)
    trials = source.get_trials(deepcopy=False)
    out: dict[str, float | None] = {"history": float(len(trials))}
    tpe = optuna.samplers.TPESampler(n_startup_trials=8, n_ei_candidates=24, multivariate=True,
                                     constant_liar=True, seed=0)
    for label, sampler in (("finesweep", build_sampler(spec)), ("optuna_tpe", tpe)):
        study = optuna.create_study(direction=source.direction, sampler=sampler)
        study.add_trials(trials)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            trial = study.ask()
            spec.space.sample(trial)
            times.append(time.perf_counter() - started)
        out[f"{label}_p50"], out[f"{label}_p95"] = _p(times, 0.5), _p(times, 0.95)
    return out


def run_arm(job: dict[str, Any]) -> dict[str, Any]:
    """One sweep of the job's arm; returns its figures and series."""
    import io

    os.environ["FINESWEEP_RECORD_TIMING"] = "1"
    from finesweep.search.spec import parse_spec
    from finesweep.search.study import load_study
    from finesweep.search.sweep import run_sweep

    folder = Path(tempfile.mkdtemp(prefix="fs-scale-"))
    strategy, _, asha = job["arm"].partition("+")
    name = f"scale_{strategy}_{'asha' if asha else 'fifo'}_{job['storage']}"
    (folder / "spec.yaml").write_text(SPEC.format(
        name=name, strategy=strategy, trials=job["trials"], epochs=job["epochs"],
        epoch_seconds=job["epoch_seconds"], concurrency=job["concurrency"],
        scheduler="{name: asha, options: {grace_period: 1}}" if asha else "none",
        storage=f"storage: {job['url']}" if job.get("url") else ""))
    spec = parse_spec(folder / "spec.yaml")
    run_dir = folder / "run"
    probe = DriverProbe()
    probe.install()
    profiler = None
    if job.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.time()
    run_sweep(spec, run_dir, address=job["address"], out=io.StringIO())
    wall = time.time() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(job["profile"])
    probe.stop()
    url = job.get("url") or f"sqlite:///{run_dir / 'study.db'}"
    trials = load_study(spec.name, url).get_trials(deepcopy=False)
    first, last = _steady_window(trials, job["concurrency"])
    span = last - first
    ended = [t for t in trials if t.datetime_complete is not None
             and first <= t.datetime_complete.timestamp() <= last]
    busy = sum(max(0.0, min(t.user_attrs["ended_at"], last) - max(t.user_attrs["first_step_at"], first))
               for t in trials if "ended_at" in t.user_attrs and "first_step_at" in t.user_attrs)
    machine_busy, workers_cpu = probe.machine_between(first, last)
    numbers = sorted(probe.suggest)
    suggestion: dict[str, Any] = {}
    for n in (10, 100, 1000):
        window = [probe.suggest[k][0] for k in numbers if 0.9 * n < k + 1 <= n]
        suggestion[str(n)] = {"p50": _p(window, 0.5), "p95": _p(window, 0.95)} if window else None
    result = {
        **job, "wall_s": wall, "trials_done": len(trials), "window_s": span,
        "states": {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
        "ends_per_s": len(ended) / span if span > 0 else None,
        "driver_cpu_ms_per_trial": 1000 * (probe.cpu_at(last) - probe.cpu_at(first)) / max(1, len(ended)),
        "driver_cpu_ms_per_trial_all": 1000 * (probe.samples[-1][1] - probe.samples[0][1]) / max(1, len(trials)),
        "ledger_cpu_ms_per_trial": 1000 * probe.ledger_cpu / max(1, len(trials)),
        "machine_busy_share": machine_busy,
        "workers_cpu_ms_per_trial": 1000 * workers_cpu / max(1, len(ended)) if workers_cpu is not None else None,
        "write_ms_per_trial": 1000 * probe.write_wall / max(1, len(trials)),
        "idle_slot_share": 1 - busy / (job["concurrency"] * span) if span > 0 else None,
        "suggestion": suggestion,
        "rss_mb_at": {str(k): v for k, v in probe.rss_at.items()},
        "rss_mb_peak": max(s[2] for s in probe.samples),
        "study_mb": _study_size(url, run_dir),
        "series": {"suggest_ms": [[k + 1, 1000 * probe.suggest[k][0]] for k in numbers],
                   "ends": [e - started for e in probe.ends]},
    }
    if strategy == "global" and job.get("reference"):
        result["reference"] = _reference_suggestions(spec, url)
    return result


# --------------------------------------------------------------------------- plan and report (parent)


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    jobs = []
    for storage in args.storages.split(","):
        for arm in args.arms.split(",") if storage == "sqlite" else args.pg_arms.split(","):
            trials = args.trials if arm in args.full.split(",") else args.other_trials
            jobs.append({"arm": arm, "storage": storage, "trials": trials, "epochs": args.epochs,
                         "epoch_seconds": args.epoch_seconds, "concurrency": args.concurrency,
                         "reference": arm == "global" and storage == "sqlite"})
    return jobs


def _fmt(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _versions() -> str:
    names = ("optuna", "ray", "sqlalchemy", "psycopg")
    return ", ".join(f"{n} {importlib.metadata.version(n)}" for n in names) + f", python {platform.python_version()}"


def table(results: list[dict[str, Any]]) -> str:
    rows = ["| arm | storage | trials | ends/s | driver CPU ms/trial (window / whole run) | ledger CPU ms/trial "
            "| suggest p50/p95 ms @10 | @100 | @1000 | idle slot share | RSS MB @100 / @last | study MB "
            "| write ms/trial | machine CPU busy | trial workers CPU ms/trial | wall s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["suggestion"]
        at = [f"{_fmt(1000 * s[k]['p50'], 0)}/{_fmt(1000 * s[k]['p95'], 0)}" if s.get(k) else "n/a"
              for k in ("10", "100", "1000")]
        rss = r["rss_mb_at"]
        rows.append(
            f"| {r['arm']} | {r['storage']} | {r['trials_done']} | {_fmt(r['ends_per_s'])} | "
            f"{_fmt(r['driver_cpu_ms_per_trial'], 0)} / {_fmt(r['driver_cpu_ms_per_trial_all'], 0)} | "
            f"{_fmt(r['ledger_cpu_ms_per_trial'], 0)} | {' | '.join(at)} | {_fmt(r['idle_slot_share'], 2)} | "
            f"{_fmt(rss.get('100'), 0)} / {_fmt(rss.get(str(r['trials_done'])), 0)} | {_fmt(r['study_mb'])} | "
            f"{_fmt(r['write_ms_per_trial'], 1)} | {_pct(r.get('machine_busy_share'))} | "
            f"{_fmt(r.get('workers_cpu_ms_per_trial'), 0)} | {_fmt(r['wall_s'], 0)} |")
    return "\n".join(rows)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate, suggest) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in results:
        label = f"{r['arm']} ({r['storage']})"
        ends = r["series"]["ends"]
        step = 50
        xs = list(range(step, len(ends), step))
        rate.plot(xs, [step / max(1e-9, ends[i] - ends[i - step]) for i in xs], label=label)
        points = r["series"]["suggest_ms"]
        window = 25
        xs = [p[0] for p in points[window:]]
        suggest.plot(xs, [statistics.median(p[1] for p in points[i - window:i]) for i in range(window, len(points))],
                     label=label)
    rate.set(xlabel="trials ended", ylabel="trials ended per second (last 50)", title="driver throughput")
    suggest.set(xlabel="trial number", ylabel="hand_out ms (median of last 25)", title="suggestion time",
                yscale="log")
    rate.legend(fontsize=7)
    suggest.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def write_results(results: list[dict[str, Any]], command: str, seconds: float | None, path: Path) -> None:
    import psutil

    references = [r for r in results if r.get("reference")]
    lines = [
        "# Scale benchmark", "",
        f"Generated by `{command}` on {datetime.date.today().isoformat()}"
        + (f" in {seconds:.0f} s." if seconds is not None else
           f" ({sum(r['wall_s'] for r in results):.0f} s of sweeps; the table written by `--report`)."), "",
        f"- Versions: {_versions()}",
        f"- Machine: {psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.platform()}",
        f"- Workload: benchmarks/scale_task.py (4 searched parameters), {results[0]['epochs']} epochs of "
        f"{results[0]['epoch_seconds']} s per trial, {results[0]['concurrency']} trials at once on a loopback "
        "Ray cluster declaring that many CPUs; ASHA with grace_period 1. Definitions: the docstring of "
        "benchmarks/scale.py.", "",
        table(results), "",
    ]
    for r in references:
        ref = r["reference"]
        lines.append(f"- Suggestion on a copy of the {r['arm']} {r['storage']} study ({ref['history']:.0f} trials), "
                     f"30 asks each: finesweep `global` p50/p95 {1000 * ref['finesweep_p50']:.0f}/"
                     f"{1000 * ref['finesweep_p95']:.0f} ms; Optuna TPESampler (same settings, one sampler) "
                     f"{1000 * ref['optuna_tpe_p50']:.0f}/{1000 * ref['optuna_tpe_p95']:.0f} ms")
    lines += ["", f"![driver throughput and suggestion time]({PLOT.name})", ""]
    # Hand-written analysis below the marker survives a re-run.
    previous = path.read_text() if path.exists() else ""
    marker = "<!-- notes -->"
    path.write_text("\n".join(lines) + ("\n" + marker + previous.split(marker, 1)[1] if marker in previous else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials of the arms in --full")
    parser.add_argument("--other-trials", type=int, default=300, help="trials of the other arms")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--full", default="global,global+asha", help="arms run with --trials")
    parser.add_argument("--storages", default="sqlite,postgres")
    parser.add_argument("--pg-arms", default="global,random+asha", help="arms run on PostgreSQL too")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--epoch-seconds", type=float, default=0.5)
    parser.add_argument("--profile", metavar="ARM", help="profile one arm's driver (SQLite); nothing written")
    parser.add_argument("--no-write", action="store_true", help="print the table; leave results/ alone")
    parser.add_argument("--report", nargs="+", metavar="JSON",
                        help="write results/ from arms already measured (the arm files a run leaves in /tmp/fs-sc-*)")
    parser.add_argument("--as-run", help="with --report: the command(s) that measured the arms")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        results = [json.loads(Path(path).read_text()) for path in args.report]
        print(table(results))
        plot(results, PLOT)
        ran = args.as_run or "; ".join(dict.fromkeys(r["command"] for r in results if r.get("command")))
        write_results(results, ran, None, RESULTS)
        return
    if args.child:
        job = json.loads(args.child)
        Path(job["out"]).write_text(json.dumps(run_arm(job)))
        return
    started = time.monotonic()
    command = "python -m benchmarks.scale" + ("" if len(sys.argv) == 1 else " " + " ".join(sys.argv[1:]))
    jobs = plan(args)
    if args.profile:
        jobs = [{**jobs[0], "arm": args.profile, "storage": "sqlite", "trials": args.trials,
                 "profile": str(Path(tempfile.gettempdir()) / "scale.prof"), "reference": False}]
    results = run_jobs(jobs, command)
    print(table(results))
    for r in results:
        if r.get("reference"):
            print("reference", json.dumps(r["reference"]))
    if args.profile:
        import pstats

        pstats.Stats(jobs[0]["profile"]).sort_stats("cumulative").print_stats(45)
        return
    if not args.no_write:
        plot(results, PLOT)
        write_results(results, command, time.monotonic() - started, RESULTS)
        print(f"wrote {RESULTS.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")


def run_jobs(jobs: list[dict[str, Any]], command: str) -> list[dict[str, Any]]:
    """Each job in a child process (a fresh driver, its memory its own) on one loopback cluster."""
    import contextlib

    from benchmarks.loopback_cluster import start_loopback_cluster

    # Trial workers (started by the cluster's raylet) import benchmarks.scale_task from here.
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    folder = Path(tempfile.mkdtemp(prefix="fs-sc-", dir="/tmp"))
    concurrency = max(j["concurrency"] for j in jobs)
    results = []
    with contextlib.ExitStack() as stack:
        url = None
        if any(j["storage"] == "postgres" for j in jobs):
            from benchmarks.postgres_server import private_postgres

            url = stack.enter_context(private_postgres())["url"]
        cluster = start_loopback_cluster(str(folder / "ray"), {"num_cpus": concurrency})
        stack.callback(cluster.shutdown)
        for index, job in enumerate(jobs):
            job = {**job, "address": cluster.address, "out": str(folder / f"arm{index}.json"), "command": command}
            if job["storage"] == "postgres":
                job["url"] = _fresh_database(url, f"arm{index}")
            print(f"[scale] {job['arm']} {job['storage']} {job['trials']} trials", flush=True)
            subprocess.run([sys.executable, "-m", "benchmarks.scale", "--child", json.dumps(job)],
                           check=True, cwd=folder)
            results.append(json.loads(Path(job["out"]).read_text()))
            r = results[-1]
            print(f"[scale]   {r['wall_s']:.0f} s, {_fmt(r['ends_per_s'])} ends/s, "
                  f"{_fmt(r['driver_cpu_ms_per_trial'], 0)} ms CPU/trial", flush=True)
    return results


def _fresh_database(url: str, name: str) -> str:
    """A new database on the server of ``url``: each arm's size is its own."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


if __name__ == "__main__":
    main()
