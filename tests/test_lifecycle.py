"""A sweep's life with real processes: Ctrl-C and SIGTERM, a second sweep or resume into a
live run directory, Ray processes a SIGKILLed driver left, read-only views, and the
identity of the study a resume continues.

Trials come from the `debug` task, whose `epoch_seconds` keeps them running long enough
to be interrupted; every wait is bounded by a timeout, none asserts on wall-clock time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from finesweep.search.run_dir import SESSION_FILE
from finesweep.search.run_dir.leftovers import leftovers, read_session
from finesweep.search.run_dir.lock import Holder, owner_is_live
from finesweep.search.spec import SpecError, parse_spec
from tensorboard.backend.event_processing import event_accumulator

ROOT = Path(__file__).resolve().parents[1]

SLOW_TRIALS = """
name: lifecycle
task: debug
metric: val_acc
space:
  learning_rate: {type: float, low: 0.01, high: 0.5, log: true}
  hidden_units: {type: int, low: 4, high: 32}
  epoch_seconds: 0.7
strategy: {name: random, seed: 7}
scheduler: none
budget: {trials: 6, max_epochs: 3}
resources: {cpus: 1, concurrency: 2}
"""


def _launch(*args: object, cwd: Path = ROOT, env: dict[str, str] | None = None,
            own_group: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "launch.py"), *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=own_group)


def _run(*args: object, cwd: Path = ROOT, timeout: float = 300,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def _states(db: Path) -> dict[int, str]:
    """number -> state, read with plain sqlite3 (not finesweep's code); {} before the tables exist."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
            return dict(connection.execute("SELECT number, state FROM trials").fetchall())
    except sqlite3.OperationalError:
        return {}


def _wait_for(condition, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the sweep ended (rc {process.returncode}) before the condition held:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the sweep")
        time.sleep(0.2)


def _finished(db: Path) -> dict[int, tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
        rows = connection.execute(
            "SELECT t.number, t.state, v.value, t.datetime_complete FROM trials t "
            "LEFT JOIN trial_values v ON v.trial_id = t.trial_id "
            "WHERE t.state IN ('COMPLETE', 'PRUNED', 'FAIL')").fetchall()
    return {number: rest for number, *rest in rows}


def _spec(tmp_path: Path, text: str = SLOW_TRIALS, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _left_ray_processes(run_dir: Path) -> list:
    record = read_session(run_dir)
    return leftovers(record) if record is not None else []


# ---- signals ------------------------------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_leaves_running_trials_resumable_and_resume_loses_none(tmp_path):
    # 4 trials, 2 at a time: the first two finish while the next two run, when Ctrl-C comes.
    spec, run_dir = _spec(tmp_path, SLOW_TRIALS.replace("trials: 6", "trials: 4")), tmp_path / "run"
    db = run_dir / "study.db"
    sweep = _launch("sweep", spec, "--out", run_dir, own_group=True)
    _wait_for(lambda: "COMPLETE" in _states(db).values() and "RUNNING" in _states(db).values(), 240, sweep)
    # As a terminal's Ctrl-C does: to the whole foreground process group, Ray's processes included.
    os.killpg(sweep.pid, signal.SIGINT)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err[-3000:]
    assert f"launch.py resume {run_dir}" in out + err
    assert "Traceback" not in err
    states = _states(db)
    # Nothing is recorded as failed by the stop itself; what ran is left to run again.
    assert "FAIL" not in states.values(), states
    finished = _finished(db)
    assert finished and "RUNNING" in states.values(), states
    assert _left_ray_processes(run_dir) == []  # The driver's Ray ended with it.
    resumed = _run("resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = optuna.load_study(study_name="lifecycle", storage=f"sqlite:///{db}")
    assert sorted(t.number for t in study.trials) == list(range(4))
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    after = _finished(db)
    for number, record in finished.items():
        assert after[number] == record, f"finished trial {number} was run again"
    for number, state in states.items():
        if state == "RUNNING":  # re-run as the same record, with the parameters it had
            assert study.trials[number].user_attrs["attempts"] == 2


@pytest.mark.slow
def test_sigterm_stops_gracefully_and_a_live_sweep_refuses_a_resume(tmp_path):
    spec, run_dir = _spec(tmp_path), tmp_path / "run"
    db = run_dir / "study.db"
    sweep = _launch("sweep", spec, "--out", run_dir)
    _wait_for(lambda: "RUNNING" in _states(db).values(), 240, sweep)
    before = _states(db)
    # A resume of the live sweep is refused, naming the holder; nothing of the run changes.
    refused = _run("resume", run_dir, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert f"pid {sweep.pid} on {socket.gethostname()}" in refused.stderr
    # Refused before the spec's classes are imported (seconds), and before Ray.
    assert "finesweep: checking" not in refused.stdout and "starting Ray" not in refused.stdout
    sweep.send_signal(signal.SIGTERM)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 143, err[-3000:]
    assert "Traceback" not in err and f"launch.py resume {run_dir}" in out + err
    after = _states(db)
    assert "FAIL" not in after.values()
    assert set(before) <= set(after)
    assert _left_ray_processes(run_dir) == []


@pytest.mark.slow
def test_second_ctrl_c_stops_at_once_keeping_finished_trials(tmp_path):
    spec, run_dir = _spec(tmp_path), tmp_path / "run"
    db = run_dir / "study.db"
    sweep = _launch("sweep", spec, "--out", run_dir)
    _wait_for(lambda: "COMPLETE" in _states(db).values(), 240, sweep)
    sweep.send_signal(signal.SIGINT)
    # Signals of one kind do not queue: send the second once the first was handled.
    seen = ""
    while "stopping, no new trials" not in seen:
        line = sweep.stderr.readline()
        assert line, f"the driver ended without announcing the stop:\n{seen[-3000:]}"
        seen += line
    sweep.send_signal(signal.SIGINT)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err[-3000:]
    assert "stopped at once" in err and f"launch.py resume {run_dir}" in err
    assert "COMPLETE" in _states(db).values()
    assert "FAIL" not in _states(db).values()


@pytest.mark.slow
def test_ray_processes_left_by_a_sigkilled_driver_are_ended_by_clean_not_by_a_view(tmp_path):
    # The driver is killed as its first trials start: 2 trials are all the resume needs to run.
    spec, run_dir = _spec(tmp_path, SLOW_TRIALS.replace("trials: 6", "trials: 2")), tmp_path / "run"
    db = run_dir / "study.db"
    sweep = _launch("sweep", spec, "--out", run_dir)
    _wait_for(lambda: "RUNNING" in _states(db).values() and (run_dir / SESSION_FILE).exists(), 240, sweep)
    record = read_session(run_dir)
    sweep.kill()
    sweep.communicate(timeout=60)
    # Some of Ray's processes (its agents) outlive a SIGKILLed driver; they are found from the record.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not leftovers(record):
        time.sleep(0.5)  # (or all died with it: then there is nothing to end, which is fine too)
    left = {p.pid for p in leftovers(record)}
    status = _run("status", run_dir, timeout=120)  # a view ends nothing, but says so
    assert status.returncode == 0, status.stderr[-3000:]
    assert "ended" not in status.stdout + status.stderr
    if leftovers(record):  # (some may still die on their own meanwhile) they were there during status
        assert f"finesweep clean {run_dir}" in status.stderr
    cleaned = _run("clean", run_dir, timeout=120)  # names each process it ends
    assert cleaned.returncode == 0, cleaned.stderr[-3000:]
    assert leftovers(record) == []
    ended = {int(pid) for pid in re.findall(r"ended pid (\d+) ", cleaned.stdout)}
    assert ended <= left, cleaned.stdout
    resumed = _run("resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(_states(db)) == list(range(2))


def _epochs(db: Path) -> dict[int, list[int]]:
    """number -> the epochs the study holds a value for; {} before the tables exist."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
            rows = connection.execute("SELECT t.number, v.step FROM trials t JOIN trial_intermediate_values v "
                                      "ON v.trial_id = t.trial_id ORDER BY t.number, v.step").fetchall()
    except sqlite3.OperationalError:
        return {}
    epochs: dict[int, list[int]] = {}
    for number, step in rows:
        epochs.setdefault(number, []).append(step)
    return epochs


@pytest.mark.slow
def test_a_sigkilled_drivers_running_trials_go_on_from_their_last_epoch_on_resume(tmp_path):
    import stat

    from finesweep.search.run_dir import STATE_FILE, trial_dir

    text = (SLOW_TRIALS.replace("trials: 6", "trials: 2").replace("max_epochs: 3", "max_epochs: 6")
            .replace("epoch_seconds: 0.7", "epoch_seconds: 1.0"))
    spec, run_dir = _spec(tmp_path, text), tmp_path / "run"
    db = run_dir / "study.db"
    sweep = _launch("sweep", spec, "--out", run_dir)

    def mid_trial() -> bool:
        states, epochs = _states(db), _epochs(db)
        return any(states.get(n) == "RUNNING" and len(e) >= 2 for n, e in epochs.items())

    _wait_for(mid_trial, 240, sweep)
    sweep.kill()  # SIGKILL: nothing of the driver's own runs after this
    sweep.communicate(timeout=60)
    status = _run("status", run_dir, timeout=120)  # ends the Ray processes the driver left
    assert status.returncode == 0, status.stderr[-3000:]
    # Trials that finished an epoch before the kill (the study records an epoch after its state).
    running = {n: e for n, e in _epochs(db).items() if _states(db)[n] == "RUNNING"}
    assert running and max(len(e) for e in running.values()) >= 2, running
    for number in running:
        state = trial_dir(run_dir, number) / STATE_FILE
        assert state.exists() and stat.S_IMODE(state.stat().st_mode) == 0o600

    resumed = _run("resume", run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "go on after their last finished epoch" in resumed.stdout
    study = optuna.load_study(study_name="lifecycle", storage=f"sqlite:///{db}")
    for number, before in running.items():
        trial = study.trials[number]
        assert trial.state.name == "COMPLETE" and trial.user_attrs["epochs"] == 6
        # It went on from an epoch it had finished (its state may be an epoch ahead of the study).
        assert trial.user_attrs["resumed_from_epoch"] >= len(before) >= 1, trial.user_attrs
        assert f"trial   {number} started (interrupted, goes on after its last finished epoch)" in resumed.stdout
        # Every epoch once in the study: an epoch whose report the kill cut off is reported from the state.
        assert sorted(trial.intermediate_values) == list(range(1, 7))
        assert not (trial_dir(run_dir, number) / STATE_FILE).exists()
        # TensorBoard holds each epoch once: the earlier ones from before the kill, the rest after.
        board = event_accumulator.EventAccumulator(str(run_dir / "tensorboard" / f"trial_{number:04d}"),
                                                   size_guidance={"scalars": 0})
        board.Reload()
        assert [e.step for e in board.Scalars("val_acc")] == list(range(1, 7))


@pytest.mark.slow
def test_two_sweeps_into_one_directory_one_is_refused_and_the_other_runs_as_alone(tmp_path):
    text = SLOW_TRIALS.replace("epoch_seconds: 0.7", "epoch_seconds: 0.3").replace("trials: 6", "trials: 3")
    spec, run_dir = _spec(tmp_path, text), tmp_path / "run"
    first, second = _launch("sweep", spec, "--out", run_dir), _launch("sweep", spec, "--out", run_dir)
    # The same sweep alone in a directory of its own, meanwhile: what its study records (trials,
    # parameters, seeds, values) does not depend on when it runs, and it shares nothing with the two.
    alone = _launch("sweep", spec, "--out", tmp_path / "alone")
    results = [(p, *p.communicate(timeout=300)) for p in (first, second)]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 2], [(p.returncode, err[-2000:]) for p, _, err in results]
    refused = next(err for p, _, err in results if p.returncode == 2)
    winner = next(p for p, _, _ in results if p.returncode == 0)
    assert f"in use by a running sweep (pid {winner.pid} on {socket.gethostname()})" in refused
    _, alone_err = alone.communicate(timeout=300)
    assert alone.returncode == 0, alone_err[-2000:]

    def record(db: Path) -> list[tuple]:
        study = optuna.load_study(study_name="lifecycle", storage=f"sqlite:///{db}")
        return [(t.number, t.state.name, t.params, t.user_attrs["seed"],
                 round(t.value, 6) if t.value is not None else t.user_attrs.get("fail_reason"))
                for t in study.trials]

    assert record(run_dir / "study.db") == record(tmp_path / "alone" / "study.db")


# ---- resume identity ---------------------------------------------------------------------

@pytest.mark.slow
def test_a_renamed_spec_cannot_resume_and_a_relative_sqlite_url_resumes_from_elsewhere(tmp_path):
    text = SLOW_TRIALS.replace("epoch_seconds: 0.7", "epoch_seconds: 0.0").replace("trials: 6", "trials: 1")
    spec = _spec(tmp_path, text)
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    run_dir = tmp_path / "run"
    first = _run("sweep", spec, "--out", run_dir, "--storage", "sqlite:///rel.db", cwd=here)
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"sqlite:///{here / 'rel.db'}" in (run_dir / "spec.yaml").read_text()
    renamed = _spec(tmp_path, text.replace("name: lifecycle", "name: lifecycle2"), "renamed.yaml")
    refused = _run("sweep", renamed, "--out", run_dir, "--resume", "--storage", f"sqlite:///{here / 'rel.db'}")
    assert refused.returncode == 2, refused.stderr
    assert "name changed from 'lifecycle' to 'lifecycle2'" in refused.stderr
    more = _run("resume", run_dir, "--trials", "2", cwd=elsewhere)
    assert more.returncode == 0, more.stderr[-2000:]
    assert not (elsewhere / "rel.db").exists()
    storage = f"sqlite:///{here / 'rel.db'}"
    assert optuna.study.get_all_study_names(storage) == ["lifecycle"]
    assert len(optuna.load_study(study_name="lifecycle", storage=storage).trials) == 2


def test_a_relative_sqlite_url_is_made_absolute_when_the_spec_is_parsed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = parse_spec(_spec(tmp_path), {("storage",): "sqlite:///sub/x.db"})
    assert spec.storage == f"sqlite:///{tmp_path / 'sub' / 'x.db'}"
    assert spec.raw["storage"] == spec.storage


# ---- the study's owner (shared storage) --------------------------------------------------

def test_a_study_owner_counts_as_live_by_pid_here_and_by_lease_elsewhere():
    me = Holder(os.getpid(), "here")
    dead = 2**22 + 12345  # above the default pid_max: no such process
    assert owner_is_live({"pid": os.getppid(), "host": "here", "lease_until": 50.0}, 100.0, me)
    assert not owner_is_live({"pid": os.getppid(), "host": "here", "lease_until": 0.0}, 100.0, me)  # released
    assert not owner_is_live({"pid": dead, "host": "here", "lease_until": 1e12}, 100.0, me)
    assert owner_is_live({"pid": 1, "host": "there", "lease_until": 200.0}, 100.0, me)
    assert not owner_is_live({"pid": 1, "host": "there", "lease_until": 50.0}, 100.0, me)
    assert not owner_is_live({"pid": me.pid, "host": "here", "lease_until": 1e12}, 100.0, me)
    assert not owner_is_live("garbage", 100.0, me)


# ---- read-only views ---------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(method: str, url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_dashboard_refuses_to_delete_the_study(tmp_path):
    db = tmp_path / "study.db"
    storage = f"sqlite:///{db}"
    study = optuna.create_study(study_name="shown", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    before = db.read_bytes()
    port = _free_port()
    board = _launch("dashboard", storage, "--port", port)
    try:
        def up() -> bool:
            try:
                return _request("GET", f"http://127.0.0.1:{port}/api/studies") == 200
            except OSError:
                return False

        _wait_for(up, 60, board)
        assert _request("DELETE", f"http://127.0.0.1:{port}/api/studies/1") == 405
        assert _request("POST", f"http://127.0.0.1:{port}/api/studies") == 405
        assert _request("GET", f"http://127.0.0.1:{port}/api/studies/1") == 200
    finally:
        board.terminate()
        board.communicate(timeout=30)
    assert len(optuna.load_study(study_name="shown", storage=storage).trials) == 3
    assert db.read_bytes() == before


# ---- ensemble.yaml goes through the spec's loader ------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


def test_an_ensemble_file_alias_bomb_is_refused_by_the_spec_loaders_limits(tmp_path):
    from finesweep.search.views.ensemble import load_ensemble

    path = tmp_path / "ensemble.yaml"
    path.write_text("finesweep_ensemble: 1\n" + BOMB)
    with pytest.raises(SpecError, match="at most 20000 YAML nodes"):
        load_ensemble(path)
    done = _run("ensemble", path, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert str(path) in done.stderr and "Traceback" not in done.stderr


def test_a_storage_password_stays_out_of_the_run_directory(tmp_path, monkeypatch):
    import stat

    from finesweep.search.resume import write_spec_copy
    from finesweep.search.study import STORAGE_VAR, storage_url, without_password

    assert without_password("postgresql://me:pw@db:5432/x") == "postgresql://me@db:5432/x"
    assert without_password("postgresql://me@db/x") == "postgresql://me@db/x"
    spec = parse_spec(_spec(tmp_path), {("storage",): "postgresql://me:s3cret@127.0.0.1/finesweep"})
    copy = tmp_path / "copy.yaml"
    write_spec_copy(copy, spec)
    assert "s3cret" not in copy.read_text() and "postgresql://me@127.0.0.1/finesweep" in copy.read_text()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert parse_spec(copy).storage == "postgresql://me@127.0.0.1/finesweep"
    # Commands on the run directory get the password back from the environment, for that database only.
    monkeypatch.setenv(STORAGE_VAR, "postgresql://me:s3cret@127.0.0.1/finesweep")
    assert storage_url(parse_spec(copy).storage, tmp_path) == "postgresql://me:s3cret@127.0.0.1/finesweep"
    assert storage_url("postgresql://me@elsewhere/finesweep", tmp_path) == "postgresql://me@elsewhere/finesweep"


@pytest.mark.slow
def test_a_full_disk_is_one_clear_line_and_leaves_nothing(tmp_path):
    """A 64 KiB tmpfs, nearly full (mounting needs root, as in CI's container)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        (disk / "filler").write_bytes(bytes(40_000))
        done = _run("sweep", _spec(tmp_path), "--out", disk / "run")
        assert done.returncode == 2, done.stderr[-2000:]
        assert [line for line in done.stderr.splitlines() if line.strip()] == [
            f"finesweep: cannot open the study storage sqlite:///{disk / 'run' / 'study.db'}: "
            "database or disk is full"]
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)
