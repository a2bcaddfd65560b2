"""Ray processes a killed driver left behind, found from what it recorded in its run directory.

A driver that starts its own local Ray writes the pids (with their start times) of that
Ray's processes and its session folder to ``ray_session.json``. Ray stops them all when
the driver exits or is stopped by a signal; after a SIGKILL most die with the driver, but
some (the dashboard and runtime-env agents) do not. The next command on the run directory
ends those: only processes that are still the recorded ones (same pid *and* start time)
and still Ray's, so a pid the system has since given to something else is never touched.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finesweep.search.run_dir import SESSION_FILE, write_atomically

RAYLET_PID_VAR = "RAY_RAYLET_PID"


def record_session(run_dir: Path, session_dir: str) -> None:
    """Write the processes of the local Ray this driver just started (and their children so
    far) for a later clean-up. Call right after the start: the driver's child processes are
    then Ray's own (GCS, raylet, agents), and nothing else of the driver's has started yet."""
    import psutil

    processes: dict[int, float] = {}
    for process in psutil.Process().children():
        try:
            processes[process.pid] = process.create_time()
            for child in process.children(recursive=True):
                processes[child.pid] = child.create_time()
        except psutil.Error:
            continue
    record = {"host": socket.gethostname(), "driver": os.getpid(), "driver_started": psutil.Process().create_time(),
              "session_dir": session_dir, "processes": {str(pid): started for pid, started in processes.items()}}
    write_atomically(run_dir / SESSION_FILE, json.dumps(record), private=True)


def forget_session(run_dir: Path) -> None:
    (run_dir / SESSION_FILE).unlink(missing_ok=True)


def _is_ray(process: Any, raylet_pids: set[str]) -> bool:
    import psutil

    try:
        name = process.name()
        cmdline = " ".join(process.cmdline())
        if name in ("raylet", "gcs_server") or name.startswith("ray::") or cmdline.startswith("ray::"):
            return True
        if "ray/" in cmdline and ("dashboard" in cmdline or "autoscaler" in cmdline or "_private" in cmdline):
            return True
        return process.environ().get(RAYLET_PID_VAR) in raylet_pids
    except psutil.Error:
        return False


def leftovers(record: Mapping[str, Any]) -> list[Any]:
    """The recorded processes still running and still Ray's, plus any process started by a
    recorded raylet (its workers and agents carry the raylet's pid in their environment).
    Nothing while the recording driver still runs (same pid and start time), nor when the
    record comes from another machine."""
    import psutil

    if record.get("host") != socket.gethostname():
        return []  # Recorded on another machine (a shared run directory): its pids mean nothing here.
    try:
        if psutil.Process(int(record["driver"])).create_time() == float(record["driver_started"]):
            return []  # The recording driver still runs (a test process reusing its Ray).
    except (psutil.Error, KeyError, TypeError, ValueError):
        pass
    recorded = {int(pid): float(started) for pid, started in record.get("processes", {}).items()}
    raylets = {str(pid) for pid in recorded}
    found = []
    for process in psutil.process_iter(["pid", "create_time"]):
        pid, started = process.info["pid"], process.info["create_time"]
        if pid == os.getpid():
            continue
        same = pid in recorded and abs(recorded[pid] - started) < 0.01
        if same and _is_ray(process, raylets):
            found.append(process)
            continue
        if recorded and started >= min(recorded.values()):
            try:
                if process.environ().get(RAYLET_PID_VAR) in raylets:
                    found.append(process)
            except psutil.Error:
                continue
    return found


def clean_up(run_dir: Path) -> int:
    """End the Ray processes a dead driver of this run directory left; returns how many.
    Safe without the run directory's lock too: a recording driver that still runs is left
    alone (see :func:`leftovers`)."""
    import psutil

    path = run_dir / SESSION_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0
    if not isinstance(record, dict):
        return 0
    found = leftovers(record)
    for process in found:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(found, timeout=5)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    path.unlink(missing_ok=True)
    return len(found)


def clean_up_run_dir(target: str | os.PathLike[str]) -> int:
    """:func:`clean_up` for a command's target when it is a run directory (not a storage URL)."""
    if "://" in str(target) or not Path(target).is_dir():
        return 0
    return clean_up(Path(target))
