"""Ray processes a killed driver left behind, found from what it recorded in its run directory.

A driver that starts its own local Ray writes the pids (with their start times) of that Ray's
processes and its session folder to ``ray_session.json``. Ray stops them all when the driver
exits or is stopped by a signal; after a SIGKILL most die with the driver, but some (the
dashboard and runtime-env agents) do not. Only ``sweep``/``resume`` of that run directory and
``finesweep clean RUN_DIR`` end them (a view never ends a process), and only processes that are
provably those: owned by this user, on the recorded host, still the recorded process (same pid
*and* start time) and Ray's by their own name or command line. A worker the recorded raylet
started later is recognised by the raylet's pid in its environment, but only beside all of that
and only while that raylet is itself a verified leftover: an environment alone never counts.
The file is read as data with bounds (:mod:`finesweep.search.run_dir.files`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from finesweep.search.run_dir import SESSION_FILE, write_atomically
from finesweep.search.run_dir.files import Fields, read_json
from finesweep.search.spec.problems import SpecError

RAYLET_PID_VAR = "RAY_RAYLET_PID"
# A Ray session has a few dozen processes; a record listing more was not written by a driver.
MAX_RECORDED = 1024
MAX_PID = 2**22  # Linux's pid_max ceiling.
# Start times are compared to this precision (psutil's create_time is rounded to 10 ms).
SAME_START_S = 0.01


@dataclass(frozen=True)
class SessionRecord:
    host: str
    driver: int
    driver_started: float
    session_dir: str
    processes: dict[int, float]


@dataclass(frozen=True)
class Leftover:
    pid: int
    name: str
    process: Any  # psutil.Process

    def describe(self) -> str:
        return f"pid {self.pid} ({self.name})"


def record_session(run_dir: Path, session_dir: str) -> None:
    """Write the processes of the local Ray this driver just started (and their children so
    far) for a later clean-up. Call right after the start: the driver's child processes are
    then Ray's own (GCS, raylet, agents), and nothing else of the driver's has started yet."""
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


def read_session(run_dir: Path) -> SessionRecord | None:
    """The run directory's ``ray_session.json``, every field checked (one-line RunFileError);
    None when there is none."""
    path = run_dir / SESSION_FILE
    if not path.exists():
        return None
    check = Fields(path)
    record = check.mapping(read_json(path), (), limit=16)
    host = check.name(record.get("host"), ("host",))
    driver = check.integer(record.get("driver"), ("driver",), 1, MAX_PID)
    started = check.number(record.get("driver_started"), ("driver_started",), 0, 1e12)
    session_dir = str(check.absolute_path(record.get("session_dir"), ("session_dir",)))
    processes = {}
    for key, value in check.mapping(record.get("processes"), ("processes",), limit=MAX_RECORDED).items():
        if not key.isdigit():
            raise check.fail(("processes", key), "a process id", repr(key))
        pid = check.integer(int(key), ("processes", key), 1, MAX_PID)
        processes[pid] = check.number(value, ("processes", key), 0, 1e12)
    return SessionRecord(host, driver, started, session_dir, processes)


def _ray_root() -> str | None:
    """The installed Ray package's folder, found without importing Ray."""
    spec = importlib.util.find_spec("ray")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return os.path.realpath(locations[0]) if locations else None


def _is_ray(process: Any, ray_root: str | None, session: str) -> str | None:
    """The process's name when it is Ray's by its own name or command line (a Ray binary or
    script from the installed Ray package, or a process titled ``ray::``) and names no other
    session than ``session``; None otherwise."""
    try:
        name = process.name()
        cmdline = process.cmdline()
    except psutil.Error:
        return None
    text = " ".join(cmdline)
    if "session_" in text and session not in text:
        return None  # Another Ray session's process.
    if name.startswith("ray::") or text.startswith("ray::"):
        return name
    if ray_root is None:
        return None
    files = [os.path.realpath(arg) for arg in cmdline[:3] if os.path.isabs(arg)]
    return name if any(f.startswith(ray_root + os.sep) for f in files) else None


def driver_alive(record: SessionRecord) -> bool:
    """Whether the driver that wrote ``record`` still runs (same pid and start time, this host)."""
    if record.host != socket.gethostname():
        return False
    try:
        return abs(psutil.Process(record.driver).create_time() - record.driver_started) < SAME_START_S
    except psutil.Error:
        return False


def leftovers(record: SessionRecord) -> list[Leftover]:
    """The recorded Ray processes still running, and the workers their raylet started since
    (see the module's rules). Nothing while the recording driver still runs (same pid and
    start time), nor when the record comes from another machine."""
    if record.host != socket.gethostname():
        return []  # Recorded on another machine (a shared run directory): its pids mean nothing here.
    if driver_alive(record):
        return []  # The recording driver still runs (a test process reusing its Ray).
    ray_root = _ray_root()
    session = os.path.basename(record.session_dir.rstrip(os.sep))
    me = os.getuid()
    found: dict[int, Leftover] = {}
    candidates = []
    for process in psutil.process_iter(["pid", "create_time", "uids"]):
        pid, started, uids = process.info["pid"], process.info["create_time"], process.info["uids"]
        if pid == os.getpid() or uids is None or uids.real != me or started is None:
            continue
        recorded = record.processes.get(pid)
        if recorded is not None and abs(recorded - started) < SAME_START_S:
            name = _is_ray(process, ray_root, session)
            if name is not None:
                found[pid] = Leftover(pid, name, process)
            continue
        if record.processes and started >= min(record.processes.values()):
            candidates.append(process)
    # Workers started after the record: only those of a raylet verified above.
    raylets = {str(pid) for pid, leftover in found.items() if leftover.name == "raylet"}
    for process in candidates if raylets else []:
        try:
            if process.environ().get(RAYLET_PID_VAR) not in raylets:
                continue
        except psutil.Error:
            continue
        name = _is_ray(process, ray_root, session)
        if name is not None:
            found[process.pid] = Leftover(process.pid, name, process)
    return list(found.values())


def end(found: list[Leftover]) -> list[Leftover]:
    """SIGTERM each, then SIGKILL what is still there after 5 s, and wait for those to be gone
    too (so that a check right after this returns finds none); returns those ended."""
    processes = []
    for leftover in found:
        try:
            leftover.process.terminate()
            processes.append(leftover.process)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=5)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    ended = {p.pid for p in processes}
    return [leftover for leftover in found if leftover.pid in ended]


def clean_up(run_dir: Path) -> list[Leftover]:
    """End the Ray processes a dead driver of this run directory left; returns them. For
    ``sweep``/``resume`` of the run directory (under its lock) and ``finesweep clean``. Safe
    without the lock too: a recording driver that still runs is left alone."""
    record = read_session(run_dir)
    if record is None or driver_alive(record):
        return []
    ended = end(leftovers(record))
    if record.host == socket.gethostname():
        (run_dir / SESSION_FILE).unlink(missing_ok=True)  # Its processes are gone now.
    return ended


def clean_lines(run_dir: Path) -> list[str]:
    """``finesweep clean RUN_DIR``: end what a killed sweep of the run directory left, and say
    what was ended (each process by pid and name), or why nothing was."""
    record = read_session(run_dir)
    if record is not None and driver_alive(record):
        return [f"the sweep of {run_dir} is running (driver pid {record.driver}); nothing ended"]
    ended = clean_up(run_dir) if record is not None else []
    return ([f"ended {leftover.describe()}, left by a killed sweep of {run_dir}" for leftover in ended]
            or [f"no Ray process of a killed sweep of {run_dir} is running; nothing ended"])


def view_hint(target: str) -> str | None:
    """What a view says when a killed sweep of its run directory left Ray processes running
    (a view ends nothing itself); None otherwise, or when the record is not one a driver wrote
    (`clean` says what is wrong with it)."""
    if "://" in target or not Path(target).is_dir():
        return None
    try:
        record = read_session(Path(target))
    except SpecError:
        return None
    if record is None or not leftovers(record):
        return None
    return f"a killed sweep of {target} left Ray processes running; `finesweep clean {target}` ends them"
