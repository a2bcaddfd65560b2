"""The sweep's Optuna study: where it is stored, and how a finished trial is recorded.

The study database is the sweep's record of truth: Ray Tune schedules, but every trial's
parameters, per-epoch values, state and reason for failing are written here.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import re
import sqlite3
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from finesweep.models.run import Direction
from finesweep.search.run_dir import STUDY_FILE

if TYPE_CHECKING:
    import optuna
    from finesweep.search.spec import SweepSpec



# The storage URL with its password: run files keep it without (see without_password).
STORAGE_VAR = "FINESWEEP_STORAGE"


def storage_url(spec_storage: str | None, run_dir: str | Path) -> str:
    """The study's URL: the spec's storage (an SQLite file in any form resolved to one
    absolute path, see :func:`normalize_storage`) or ``run_dir/study.db``."""
    if spec_storage:
        spec_storage = normalize_storage(spec_storage)
        given = os.environ.get(STORAGE_VAR)
        if given and without_password(given) == without_password(spec_storage):
            return given  # The same database, with the password that spec.yaml leaves out.
        return spec_storage
    return f"sqlite:///{(Path(run_dir) / STUDY_FILE).resolve()}"


# sqlalchemy's URL grammar: user info is `user[:password]@`, the password anything but '@'.
_USER_INFO = re.compile(r"^(?P<user>[^:/@]*)(?::(?P<password>[^@]*))?@")
# Query parameters that carry a secret (libpq's `password`, MySQL drivers' `passwd`, ...).
SECRET_PARAMETERS = frozenset({"password", "passwd", "pwd", "pass", "secret", "token", "sslpassword",
                               "access_token", "auth_token"})


def _secret_free(url: str, replacement: str | None) -> str:
    """``url`` with its password (user info and secret query parameters) replaced by
    ``replacement``, or left out when it is None."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    user_info = _USER_INFO.match(rest)
    if user_info and user_info.group("password") is not None:
        user = user_info.group("user")
        rest = (f"{user}:{replacement}@" if replacement is not None else f"{user}@") + rest[user_info.end():]
    main, mark, query = rest.partition("?")
    if mark:
        pairs = []
        for pair in query.split("&"):
            key = unquote(pair.split("=", 1)[0]).strip().lower()
            if key not in SECRET_PARAMETERS:
                pairs.append(pair)
            elif replacement is not None:
                pairs.append(f"{pair.split('=', 1)[0]}={replacement}")
        rest = main + ("?" + "&".join(pairs) if pairs else "")
    return f"{scheme}://{rest}"


def redact(url: str) -> str:
    """A storage URL fit for printing: every password in it (user info, query) replaced."""
    return _secret_free(url, "***")


def without_password(url: str) -> str:
    """The storage URL with its passwords left out (for files written to disk); the
    database driver then takes it from PGPASSWORD or ~/.pgpass."""
    return _secret_free(url, None)


# SQLite URI parameters that only mean something in the `file:` URI form.
_URI_ONLY = frozenset({"uri", "mode", "cache", "vfs", "immutable", "nolock", "psow", "modeof"})


def sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL, absolute, in each of its forms (``sqlite:///rel.db``,
    ``sqlite:////abs.db``, ``sqlite:///file:rel.db?uri=true``); a relative one resolves against
    the working directory, as SQLite would open it. None for other databases and in-memory ones."""
    # Imported here: SQLAlchemy is slow to import.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if not parsed.drivername.startswith("sqlite"):
        return None
    name = parsed.database or ""
    query = {key: str(value) for key, value in parsed.query.items()}
    if name.startswith("file:") and query.get("uri", "").lower() in ("true", "1"):
        if query.get("mode") == "memory":
            return None
        name = unquote(name[len("file:"):])
        if name.startswith("//"):  # file://localhost/abs or file:///abs
            name = "/" + name[2:].split("/", 1)[1] if "/" in name[2:] else ""
    if not name or name == ":memory:":
        return None
    return Path(os.path.abspath(name))


def normalize_storage(url: str) -> str:
    """An SQLite URL in its one canonical form, ``sqlite:///`` and the file's absolute path
    (options of the `file:` URI form dropped); any other URL unchanged. Resolved once, when the
    sweep starts, so every later command opens the same file from any working directory."""
    path = sqlite_file(url)
    if path is None:
        return url
    scheme = url.split("://", 1)[0]
    query = url.partition("?")[2]
    kept = [pair for pair in query.split("&") if pair and pair.split("=", 1)[0].lower() not in _URI_ONLY]
    return f"{scheme}:///{path}" + ("?" + "&".join(kept) if kept else "")


def _storage(url: str) -> optuna.storages.BaseStorage:
    # Imported here: Optuna is slow to import.
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # The driver is the only writer, but `status` and `export` may read meanwhile.
        kwargs = {"connect_args": {"timeout": 60}}
    storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    if url.startswith("sqlite") and url not in ("sqlite://", "sqlite:///:memory:"):
        _write_ahead(storage.engine, url)  # A file: an in-memory database would not outlive dispose().
    return storage


# The engines this process has connected to each SQLite study file in write-ahead-log mode
# since it last folded that file back (leave_write_ahead); what is left is folded back at exit.
_WRITE_AHEAD_ENGINES: dict[str, list[Any]] = {}


def leave_write_ahead(url: str) -> bool:
    """Fold a SQLite study back into its main file once this process is done writing: close
    this process's connections, copy every commit in ``-wal`` into the file, and put the file
    back in rollback-journal mode. At rest the study is then the one file ``study.db``: a copy
    of it alone holds every trial, and a reader opens it without creating ``-wal``/``-shm``
    files (which a full or read-only disk refuses).

    Another process's open connection (a live `status`, the dashboard) keeps the file in WAL
    mode, but not from being folded back. Returns whether the main file holds everything
    (False: a reader kept a snapshot open for over a minute; the next writer folds it back).
    A killed driver leaves the commits in ``-wal`` with ``-shm`` beside it, which readers
    read and the next writer folds back."""
    engines = _WRITE_AHEAD_ENGINES.pop(url, [])
    if not engines:
        return True
    for engine in engines:
        engine.dispose()  # A connection left open here would keep the file in WAL mode.
    return fold_back(Path(url.removeprefix("sqlite:///")))


def fold_back(path: Path, patience_s: float = 1.0) -> bool:
    """Checkpoint the write-ahead log of the SQLite file ``path`` into it and truncate the
    log (waiting, up to a minute, for readers of older snapshots); then switch the file to
    rollback-journal mode, which needs every other connection closed: tried for
    ``patience_s`` (a `status` closes its connection in well under a second, a dashboard
    keeps one). Returns whether the main file holds every commit."""
    if not path.is_file():
        return True  # Removed meanwhile (a refused sweep's run directory): nothing to fold back.
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as connection:
        blocked, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        deadline = time.monotonic() + patience_s
        while True:
            try:
                if connection.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete":
                    return True
            except sqlite3.OperationalError:  # "database is locked": another connection is open
                pass
            if time.monotonic() > deadline:
                return not blocked
            time.sleep(0.05)


@atexit.register
def _fold_back_at_exit() -> None:
    """Whatever this process still holds open in WAL mode (in-process use that never called
    leave_write_ahead: a notebook, a test, an interrupted command) is folded back as it exits."""
    for url in list(_WRITE_AHEAD_ENGINES):
        with contextlib.suppress(Exception):  # Exiting anyway: the next writer folds it back.
            leave_write_ahead(url)


def _write_ahead(engine: Any, url: str) -> None:
    """SQLite in write-ahead-log mode with ``synchronous=NORMAL``: a commit appends to the log
    without waiting for the disk (measured: 16 study writes per trial took 348 ms with the
    default rollback journal, 60 ms like this). A killed driver loses nothing it committed;
    a power cut may lose the last commits but never corrupts the file, and a resume re-runs
    what was lost. Readers (`status`, the dashboard) no longer block the writer either. WAL
    needs a local filesystem (not NFS): use PostgreSQL there, as for any shared study.
    Every new connection registers the engine for :func:`leave_write_ahead`, also one made
    after the file was folded back (a study object used again)."""
    # Imported here: SQLAlchemy is slow to import.
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        engines = _WRITE_AHEAD_ENGINES.setdefault(url, [])
        if engine not in engines:
            engines.append(engine)

    engine.dispose()  # Connections opened while the storage set up its tables get the pragmas too.


def optuna_direction(direction: Direction) -> str:
    """The study direction Optuna takes for ``direction`` (models/ knows only min and max)."""
    return "maximize" if direction.maximizes else "minimize"


def direction_of(study_direction: optuna.study.StudyDirection | str) -> Direction:
    """The :class:`Direction` of an Optuna study direction (or its name, any case)."""
    name = getattr(study_direction, "name", study_direction)
    return Direction("max" if str(name).lower() == "maximize" else "min")


def driver_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage of a sweep's driver, its study's only writer (see :mod:`search.study.cache`)."""
    # Imported here: Optuna is slow to import.
    from finesweep.search.study.cache import DriverStorage

    return DriverStorage(_storage(url))


def open_study(spec: SweepSpec, url: str, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """The study as the sweep's driver opens it."""
    # Imported here: Optuna is slow to import.
    import optuna

    if spec.several_objectives:
        return optuna.create_study(study_name=spec.name, storage=driver_storage(url), sampler=sampler,
                                   directions=[optuna_direction(Direction(o.mode)) for o in spec.objectives],
                                   load_if_exists=True)
    return optuna.create_study(study_name=spec.name, storage=driver_storage(url), sampler=sampler,
                               direction=optuna_direction(Direction(spec.mode)), load_if_exists=True)


def load_study(name: str, url: str) -> optuna.Study:
    # Imported here: Optuna is slow to import.
    import optuna

    return optuna.load_study(study_name=name, storage=_storage(url))


@dataclass(frozen=True)
class Outcome:
    state: str  # COMPLETE, PRUNED or FAIL
    value: float | None
    reason: str | None = None
    # Every objective's value at the best epoch, for a study of several objectives.
    values: tuple[float, ...] | None = None


def trial_outcome(last_result: Mapping[str, Any] | None, errored: bool, max_epochs: int,
                  reason: str | None = None) -> Outcome:
    """How a trial that Ray has finished is recorded.

    A trial that stopped before ``max_epochs`` without an error was stopped by the scheduler
    (or the time limit): PRUNED, never COMPLETE with a partly trained value; unless its last
    report says its own callbacks or Trainer settings ended training (``stopped_early``: an
    EarlyStopping in ``trainer.callbacks``), which is how the trial was meant to end: COMPLETE
    with its best epoch. A non-finite objective is a failure, so it can never be chosen as best.
    """
    if errored:
        return Outcome("FAIL", None, reason or "the trial raised an error")
    if not last_result or "best_value" not in last_result:
        return Outcome("FAIL", None, reason or "the trial ended without reporting a metric")
    value = float(last_result["best_value"])
    if not math.isfinite(value):
        return Outcome("FAIL", None, f"non-finite metric {value}")
    if int(last_result.get("epoch", 0)) < max_epochs and not last_result.get("stopped_early"):
        return Outcome("PRUNED", value)
    return Outcome("COMPLETE", value)


def set_user_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    """Several user attributes of a running trial, in one transaction where the driver's
    storage allows it (each attribute is its own commit otherwise)."""
    batch = getattr(trial.storage, "set_trial_user_attrs", None)
    if batch is None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    batch(trial._trial_id, attrs)
    trial._cached_frozen_trial.user_attrs.update(attrs)


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    # Imported here: Optuna is slow to import.
    import optuna

    if outcome.reason:
        trial.set_user_attr("fail_reason", outcome.reason)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if outcome.state == "COMPLETE":
            study.tell(trial, list(outcome.values) if outcome.values is not None else outcome.value)
        elif outcome.state == "PRUNED":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)


def fail_unfinished(study: optuna.Study, reason: str) -> int:
    """Record trials still RUNNING (the sweep ended around them) as FAIL; returns how many."""
    # Imported here: Optuna is slow to import.
    import optuna

    count = 0
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        tell(study, optuna.trial.Trial(study, frozen._trial_id), Outcome("FAIL", None, reason))
        count += 1
    return count


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for frozen in study.get_trials(deepcopy=False):
        counts[frozen.state.name] = counts.get(frozen.state.name, 0) + 1
    return counts


def ranked_trials(study: optuna.Study, mode: str) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials, best first."""
    return ranked_trials_of(study.get_trials(deepcopy=False), mode)


def ranked_trials_of(trials: list[optuna.trial.FrozenTrial], mode: str) -> list[optuna.trial.FrozenTrial]:
    done = [t for t in trials if t.state.name == "COMPLETE"]
    return sorted(done, key=lambda t: Direction(mode).sort_key(first_value(t)))


def first_value(trial: optuna.trial.FrozenTrial) -> float:
    """A COMPLETE trial's value by the first objective, the sweep's `metric` (``trial.value``
    refuses a trial of several objectives)."""
    return float(trial.values[0])


def describe_storage(url: str) -> str:
    return redact(url) if "://" in url else os.fspath(url)
