"""What one sweep driver sustains: many simulated trials at once, measured from outside the driver.

    python -m benchmarks.scale     # all 6 arms on SQLite, global and random+asha on PostgreSQL too
    python -m benchmarks.scale --trials 200 --arms random,global+asha --storages sqlite --no-write
    python -m benchmarks.scale --profile global      # cProfile of one arm's driver (prints the top)

A Ray head started with the `ray` CLI (tests/ray_nodes.py) declares ``--concurrency`` logical CPUs
(64), so 64 trials of one CPU each run at once on this 2-core machine. Each trial is the
synthetic scripted task of benchmarks/scale_task.py (a learning curve, ``--epoch-seconds`` of
sleep per epoch, run by Lightning as a user model, training nothing: each trial worker imports
torch and Lightning). Each arm (strategy, with or without ASHA, on SQLite or PostgreSQL) is one
`run_sweep` in a child process; the child wraps the trial ledger's three calls (hand_out,
record, complete) with timers and samples its own CPU and memory, so the production
code is measured as it is. Trials record their worker-side timings with the benchmark's own
Lightning callback (benchmarks/timing.py, in the spec's ``trainer.callbacks``).

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
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.scale_probe import DriverProbe, quantile, reference_suggestions, steady_window, study_size
from benchmarks.scale_report import PLOT, RESULTS, fmt, plot, table, write_results
from benchmarks.timing import read_timings

ROOT = Path(__file__).resolve().parents[1]
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
trainer:
  callbacks: [{{class_path: benchmarks.timing.TrialTiming, init_args: {{folder: {timings}}}}}]
{storage}
"""


# --------------------------------------------------------------------------- one arm (child)


def run_arm(job: dict[str, Any]) -> dict[str, Any]:
    """One sweep of the job's arm; returns its figures and series."""
    import io

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
        storage=f"storage: {job['url']}" if job.get("url") else "", timings=folder / "timings"))
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
    timings = read_timings(folder / "timings", drivers=(os.getpid(),))
    first, last = steady_window(timings, job["concurrency"])
    span = last - first
    ended = [t for t in trials if t.datetime_complete is not None
             and first <= t.datetime_complete.timestamp() <= last]
    busy = sum(max(0.0, min(r["ended_at"], last) - max(r["first_step_at"], first)) for r in timings)
    machine_busy, workers_cpu = probe.machine_between(first, last)
    numbers = sorted(probe.suggest)
    suggestion: dict[str, Any] = {}
    for n in (10, 100, 1000):
        window = [probe.suggest[k][0] for k in numbers if 0.9 * n < k + 1 <= n]
        suggestion[str(n)] = {"p50": quantile(window, 0.5), "p95": quantile(window, 0.95)} if window else None
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
        "study_mb": study_size(url, run_dir),
        "series": {"suggest_ms": [[k + 1, 1000 * probe.suggest[k][0]] for k in numbers],
                   "ends": [e - started for e in probe.ends]},
    }
    if strategy == "global" and job.get("reference"):
        result["reference"] = reference_suggestions(spec, url)
    return result


# --------------------------------------------------------------------------- plan and run the arms (parent)


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    jobs = []
    for storage in args.storages.split(","):
        for arm in args.arms.split(",") if storage == "sqlite" else args.pg_arms.split(","):
            trials = args.trials if arm in args.full.split(",") else args.other_trials
            jobs.append({"arm": arm, "storage": storage, "trials": trials, "epochs": args.epochs,
                         "epoch_seconds": args.epoch_seconds, "concurrency": args.concurrency,
                         "reference": arm == "global" and storage == "sqlite"})
    return jobs


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

    from tests import ray_nodes

    # Trial workers (started by the cluster's raylet) import benchmarks.scale_task from here.
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    folder = Path(tempfile.mkdtemp(prefix="fs-sc-", dir="/tmp"))
    concurrency = max(j["concurrency"] for j in jobs)
    results = []
    with contextlib.ExitStack() as stack:
        url = None
        if any(j["storage"] == "postgres" for j in jobs):
            from tests.postgres_server import private_postgres

            url = stack.enter_context(private_postgres())["url"]
        cluster = stack.enter_context(ray_nodes.cluster(folder / "cluster", head_cpus=concurrency))
        for index, job in enumerate(jobs):
            job = {**job, "address": cluster.address, "out": str(folder / f"arm{index}.json"), "command": command}
            if job["storage"] == "postgres":
                job["url"] = _fresh_database(url, f"arm{index}")
            print(f"[scale] {job['arm']} {job['storage']} {job['trials']} trials", flush=True)
            subprocess.run([sys.executable, "-m", "benchmarks.scale", "--child", json.dumps(job)],
                           check=True, cwd=folder, env=cluster.env)
            results.append(json.loads(Path(job["out"]).read_text()))
            r = results[-1]
            print(f"[scale]   {r['wall_s']:.0f} s, {fmt(r['ends_per_s'])} ends/s, "
                  f"{fmt(r['driver_cpu_ms_per_trial'], 0)} ms CPU/trial", flush=True)
    return results


def _fresh_database(url: str, name: str) -> str:
    """A new database on the server of ``url``: each arm's size is its own."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


if __name__ == "__main__":
    main()
