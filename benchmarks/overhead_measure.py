"""Measurement of one overhead-benchmark arm from outside its process (benchmarks/overhead.py):
the arm runs as `python -m benchmarks.overhead --arm NAME`, sampled for CPU and memory meanwhile,
and its per-trial overheads are read from the timings it recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _overheads(records: list[dict[str, Any]]) -> list[float]:
    """Gaps between a trial's end and the next trial's first step on the same worker,
    skipping each worker's first trial (its start-up is counted in the wall time)."""
    by_worker: dict[Any, list[dict[str, Any]]] = {}
    for record in records:
        if record.get("first_step_at") and record.get("ended_at"):
            by_worker.setdefault(record["worker"], []).append(record)
    gaps = []
    for runs in by_worker.values():
        runs.sort(key=lambda r: r["first_step_at"])
        gaps += [b["first_step_at"] - a["ended_at"] for a, b in zip(runs, runs[1:], strict=False)]
    return gaps


class CpuSampler:
    """Samples machine-wide CPU busy time (/proc/stat) and one process tree's memory."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float, float]] = []  # (time, busy jiffies, total jiffies)
        self.rss: list[tuple[float, int]] = []  # (time, resident bytes of the process)
        self.peak_rss = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _cpu() -> tuple[float, float]:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def _run(self) -> None:
        while not self.stop.is_set():
            busy, total = self._cpu()
            self.samples.append((time.time(), busy, total))
            try:
                resident = self.process.memory_info().rss
                self.rss.append((time.time(), resident))
                self.peak_rss = max(self.peak_rss, resident)
            except Exception:  # noqa: BLE001 - the process may have just ended
                pass
            self.stop.wait(0.2)

    def utilisation(self, start: float, end: float) -> float | None:
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][2] - inside[0][2])


def run_arm(name: str, trials: int, asha: bool, workdir: Path, extra: list[str] = ()) -> dict[str, Any]:
    out = workdir / f"{name}-{trials}-{'asha' if asha else 'fifo'}{'-' + extra[-1] if extra else ''}"
    out.mkdir(parents=True)
    command = [sys.executable, "-m", "benchmarks.overhead", "--arm", name, "--trials", str(trials),
               "--out", str(out), *(["--asha"] if asha else []), *extra]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sampler = CpuSampler(process.pid)
    if process.wait() != 0:
        raise RuntimeError(f"arm {name} failed: {' '.join(command)}")
    sampler.stop.set()
    result = json.loads((out / "result.json").read_text())
    steps = [r["first_step_at"] for r in result["records"] if r.get("first_step_at")]
    ends = [r["ended_at"] for r in result["records"] if r.get("ended_at")]
    result["cpu"] = sampler.utilisation(min(steps), max(ends)) if steps and ends else None
    result["driver_peak_mb"] = sampler.peak_rss / 2**20
    result["rss_samples"] = sampler.rss
    result["gaps"] = _overheads(result["records"])
    return result


def peak_mb_until(result: dict[str, Any], finished: int) -> float:
    """The driver's peak memory until ``finished`` trials had ended (all of them if fewer)."""
    ends = sorted(r["ended_at"] for r in result["records"] if r.get("ended_at"))
    until = ends[min(finished, len(ends)) - 1]
    return max(rss for at, rss in result["rss_samples"] if at <= until) / 2**20
