"""The SQLite study at rest: whoever wrote it, `study.db` alone holds every trial once the writer
is done (in write-ahead-log mode the commits first go to `study.db-wal`), and a study a killed
driver left in WAL mode is read by the views, on a read-only or full disk too, and folded back
by the next writer.

The disks are small tmpfs mounts (mounting needs root, as in CI's container; skipped elsewhere).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from finesweep.search.study import fold_back, leave_write_ahead, load_study
from finesweep.search.views.results import load_sweep

ROOT = Path(__file__).resolve().parents[1]


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _study_with_trials(db: Path, count: int) -> str:
    """A study named ``s`` whose ``count`` trials were written in WAL mode (finesweep's writer),
    still open in this process; returns its URL."""
    url = _create(db, "s")
    study = load_study("s", url)
    for index in range(count):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, float(index))
    return url


def _create(db: Path, name: str) -> str:
    """An empty study (Optuna's own storage, its connections closed again); returns its URL."""
    storage = optuna.storages.RDBStorage(_url(db))
    optuna.create_study(study_name=name, storage=storage)
    storage.engine.dispose()
    return _url(db)


def _journal_mode(db: Path) -> str:
    """The mode recorded in the file's header (bytes 18-19: 1 rollback journal, 2 WAL)."""
    return {1: "delete", 2: "wal"}[db.read_bytes()[18]]


def _trials_in_copy_alone(db: Path, folder: Path) -> int:
    """Copy ``db`` alone (no -wal, no -shm) into ``folder`` and count the trials the copy holds."""
    folder.mkdir(exist_ok=True)
    copy = shutil.copy(db, folder / "copy.db")
    with contextlib.closing(sqlite3.connect(copy)) as connection:
        try:
            return connection.execute("SELECT count(*) FROM trials").fetchone()[0]
        except sqlite3.OperationalError:  # No tables: an empty study file.
            return 0


@contextlib.contextmanager
def _reader(db: Path) -> Iterator[sqlite3.Connection]:
    """A reader connected meanwhile, as a `status` poll or the dashboard is."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    connection.execute("SELECT count(*) FROM trials").fetchone()
    try:
        yield connection
    finally:
        connection.close()


def test_a_study_is_folded_back_into_its_main_file_while_a_reader_stays_connected(tmp_path):
    """The cause of a failing full-disk test: the shared sweep ended while its status poller was
    connected, the switch out of WAL mode was refused ("database is locked"), and the reader,
    closing last and read-only, could not checkpoint: study.db alone held no trial."""
    db = tmp_path / "study.db"
    url = _study_with_trials(db, 5)
    with _reader(db):
        assert _trials_in_copy_alone(db, tmp_path / "before") < 5, "the commits are in study.db-wal"
        assert leave_write_ahead(url) is True
        assert _trials_in_copy_alone(db, tmp_path / "while") == 5
    assert not (tmp_path / "study.db-wal").exists() or (tmp_path / "study.db-wal").stat().st_size == 0


def test_with_no_reader_the_study_is_one_file_in_rollback_journal_mode(tmp_path):
    db = tmp_path / "study.db"
    url = _study_with_trials(db, 3)
    assert _journal_mode(db) == "wal"
    leave_write_ahead(url)
    assert _journal_mode(db) == "delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]
    assert _trials_in_copy_alone(db, tmp_path / "copy") == 3


def test_a_study_used_again_after_it_was_folded_back_is_folded_back_again(tmp_path):
    db = tmp_path / "study.db"
    url = _create(db, "s")
    study = load_study("s", url)
    study.enqueue_trial({"x": 0.5})
    leave_write_ahead(url)
    study.tell(study.ask(), 1.0)  # The same objects write on: their engine reconnects in WAL mode.
    with _reader(db):
        leave_write_ahead(url)
        assert _trials_in_copy_alone(db, tmp_path / "copy") == 1


WRITER = """
import os, sys
import optuna
from finesweep.search.study import load_study

url, ending = sys.argv[1], sys.argv[2]
storage = optuna.storages.RDBStorage(url)
optuna.create_study(study_name="s", storage=storage)
storage.engine.dispose()
study = load_study("s", url)
for index in range(4):
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), float(index))
print("written", flush=True)
if ending == "killed":
    os._exit(0)  # as SIGKILL: no clean-up of any kind
"""


def _write_in_a_process(db: Path, ending: str) -> None:
    done = subprocess.run([sys.executable, "-c", WRITER, _url(db), ending], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "written" in done.stdout, done.stderr[-2000:]


def test_a_process_that_never_folds_back_is_folded_back_as_it_exits(tmp_path):
    """In-process use (a notebook, a script, a test) that never calls leave_write_ahead: the
    study is folded back at exit, into one file in rollback-journal mode (closing the last
    connection would checkpoint, but leave the file in WAL mode)."""
    db = tmp_path / "study.db"
    _write_in_a_process(db, "exits")
    assert _journal_mode(db) == "delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]
    assert _trials_in_copy_alone(db, tmp_path / "copy") == 4


def _killed_drivers_study(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "study.db"
    _write_in_a_process(db, "killed")
    assert {p.name for p in folder.iterdir()} == {"study.db", "study.db-wal", "study.db-shm"}
    assert _journal_mode(db) == "wal"
    return db


def test_a_killed_writers_study_is_read_whole_and_folded_back_by_the_next_writer(tmp_path):
    db = _killed_drivers_study(tmp_path / "run")
    assert [t.value for t in load_sweep(_url(db)).study.trials] == [0.0, 1.0, 2.0, 3.0]
    url = _url(db)
    study = load_study("s", url)  # the next writer (a resume)
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 4.0)
    assert leave_write_ahead(url)
    assert _trials_in_copy_alone(db, tmp_path / "copy") == 5


@contextlib.contextmanager
def _small_disk(folder: Path, size_kib: int) -> Iterator[Path]:
    folder.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _make_read_only(disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)


def _fill(disk: Path) -> None:
    (disk / "filler").write_bytes(bytes(max(0, shutil.disk_usage(disk).free - 1024)))


@pytest.mark.parametrize("disk_kind", ["read-only", "full"])
def test_a_killed_writers_study_copied_whole_is_read_on_a_read_only_or_full_disk(tmp_path, disk_kind):
    db = _killed_drivers_study(tmp_path / "run")
    with _small_disk(tmp_path / "disk", 1024) as disk:
        for path in db.parent.iterdir():  # the run directory copied whole, -wal and -shm included
            shutil.copy(path, disk / path.name)
        _make_read_only(disk) if disk_kind == "read-only" else _fill(disk)
        before = {name: (disk / name).read_bytes() for name in ("study.db", "study.db-wal")}
        assert [t.value for t in load_sweep(_url(disk / "study.db")).study.trials] == [0.0, 1.0, 2.0, 3.0]
        assert {name: (disk / name).read_bytes() for name in ("study.db", "study.db-wal")} == before


@pytest.mark.parametrize("disk_kind", ["read-only", "full"])
def test_a_study_left_in_wal_mode_by_a_lingering_reader_is_read_alone_on_a_read_only_or_full_disk(tmp_path,
                                                                                                 disk_kind):
    """A dashboard kept the file in WAL mode (folded back all the same): a copy of study.db alone
    on a disk where no -shm file can be made is read as it is."""
    db = tmp_path / "study.db"
    url = _study_with_trials(db, 3)
    with _reader(db):
        assert leave_write_ahead(url)
    assert _journal_mode(db) == "wal"
    with _small_disk(tmp_path / "disk", 1024) as disk:
        shutil.copy(db, disk / "study.db")
        _make_read_only(disk) if disk_kind == "read-only" else _fill(disk)
        assert [t.value for t in load_sweep(_url(disk / "study.db")).study.trials] == [0.0, 1.0, 2.0]
        assert sorted(p.name for p in disk.iterdir()) == (["study.db"] if disk_kind == "read-only"
                                                          else ["filler", "study.db"])


def test_folding_back_a_removed_study_creates_nothing(tmp_path):
    assert fold_back(tmp_path / "gone.db") is True
    assert not (tmp_path / "gone.db").exists()


SMALL = """
name: small
task: debug
metric: val_acc
space:
  learning_rate: {type: float, low: 0.01, high: 0.5, log: true}
strategy: {name: random, seed: 0}
scheduler: none
budget: {trials: 3, max_epochs: 1}
resources: {cpus: 1, concurrency: 2}
"""


class PollingReader(threading.Thread):
    """A status poller of the same process that is never disconnected: it reads the study
    every 0.1 s, each time on a new read-only connection opened before the last one closes
    (the shared sweep of test_results had one connected while the sweep ended)."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.db, self.stop, self.reads, self.errors = db, threading.Event(), 0, []

    def run(self) -> None:
        connection = None
        while not self.stop.wait(0.1):
            if not self.db.exists():
                continue
            try:
                fresh = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=60)
                fresh.execute("SELECT count(*) FROM sqlite_master").fetchone()
                self.reads += 1
            except sqlite3.Error as error:
                self.errors.append(str(error))
                continue
            if connection is not None:
                connection.close()
            connection = fresh
        if connection is not None:
            connection.close()


@pytest.mark.slow
def test_after_every_command_study_db_alone_holds_every_trial(tmp_path, local_ray, capsys):
    """Each command in this process, as a notebook or the tests run them (the process, and its
    engines, live on), with a reader of the same process connected throughout: a copy of
    study.db alone holds every trial after each one."""
    from finesweep.search.cli import main as cli_main

    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL)
    run, db = tmp_path / "run", tmp_path / "run" / "study.db"
    commands = [
        (["sweep", str(spec), "--out", str(run)], 3),
        (["resume", str(run), "--trials", "4"], 4),
        (["export", str(run), "--top-k", "2"], 4),
        (["export", str(run), "--top-k", "1", "--reseed", "1"], 4),
        (["ensemble", str(run), "--top-k", "2"], 4),
        (["train", str(run / "best.yaml"), "--out", str(tmp_path / "retrain")], 4),
        (["status", str(run)], 4),
        (["report", str(run), "--out", str(tmp_path / "report")], 4),
    ]
    reader = PollingReader(db)
    reader.start()
    try:
        for index, (command, trials) in enumerate(commands):
            assert cli_main(command) == 0, capsys.readouterr()
            assert _trials_in_copy_alone(db, tmp_path / f"copy{index}") == trials, command[0]
    finally:
        reader.stop.set()
        reader.join(timeout=30)
    assert reader.reads > 0 and not reader.errors, reader.errors[:3]
