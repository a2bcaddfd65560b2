"""Reading a sweep's record, finished or still running, for `status`, `report`, `export`,
`dashboard`, `export --reseed` and `ensemble`.

The study database is the record of truth; it is opened read-only where the backend allows
it (SQLite: a missing file is an error, never a new database), so reading never blocks or
alters a sweep that is writing to it. The run directory's spec copy is read as plain data
(:func:`finesweep.search.run_dir.files.read_spec_copy`): no view imports the user's module, so a
run directory copied to a machine without it can still be read, and a module planted in it
never runs.
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from finesweep.models.run import Direction
from finesweep.search.run_dir import SPEC_COPY, STUDY_FILE
from finesweep.search.run_dir.files import NAME, Fields, RunFileError, RunInfo, read_spec_copy
from finesweep.search.study import (
    describe_storage,
    direction_of,
    first_value,
    ranked_trials,
    sqlite_file,
    storage_url,
)

if TYPE_CHECKING:
    import optuna


class ResultsError(RuntimeError):
    """The sweep cannot be read as asked (no run directory, no study, no such trial)."""


@dataclass(frozen=True)
class SweepRecord:
    """One sweep as stored: its study, and what its run directory records when known."""

    study: optuna.Study
    url: str
    metric: str
    mode: str
    param_names: tuple[str, ...]
    info: RunInfo | None = None
    run_dir: Path | None = None

    def ranked(self) -> list[optuna.trial.FrozenTrial]:
        """COMPLETE trials, best first (by the first objective)."""
        return ranked_trials(self.study, self.mode)

    @property
    def objectives(self) -> tuple[tuple[str, str], ...]:
        """Every objective as (name, mode): the run's spec copy, else the study's record."""
        if self.info is not None and self.info.objectives:
            return self.info.objectives
        recorded = self.study.user_attrs.get("objectives")
        if isinstance(recorded, list) and len(recorded) == len(self.study.directions):
            return tuple((str(n), str(m)) for n, m in recorded)
        return ((self.metric, self.mode),)

    @property
    def constraints(self) -> Mapping[str, Mapping[str, float]]:
        if self.info is not None:
            return self.info.constraints
        recorded = self.study.user_attrs.get("constraints")
        return recorded if isinstance(recorded, dict) else {}

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1 or bool(self.constraints)


def read_only_url(url: str) -> str:
    """The URL opened read-only: an SQLite file, in whichever form it is named, must exist and
    is opened with ``mode=ro`` (a view never creates a database); other databases unchanged."""
    path = sqlite_file(url)
    if path is None:
        if url.split("://", 1)[0].startswith("sqlite"):
            raise ResultsError(f"{describe_storage(url)} is an in-memory database: it holds no sweep")
        return url
    if not path.is_file():
        raise ResultsError(f"no study database at {path}")
    if Path(f"{path}-journal").exists():
        _roll_back_interrupted_write(path)
    readable = f"file:{quote(str(path))}?mode=ro"
    if _wal_mode_with_empty_log(path) and (not Path(f"{path}-shm").exists() or not _opens(readable)):
        # In WAL mode a reader needs a -shm file (SQLite creates one, and an empty -wal, beside
        # the study), which a read-only or full disk cannot give it, and a study.db copied alone
        # has neither. With nothing in the log the file alone is the study, and no writer is
        # using it (a live one keeps -shm beside it and changes the file only after a thousand
        # pages of log): read it as it is.
        readable += "&immutable=1"
    return f"sqlite:///{readable}&uri=true"


def _opens(uri: str) -> bool:
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=60)
    except sqlite3.Error:
        return False
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
        return True
    except sqlite3.Error:
        return False
    finally:
        connection.close()


def _wal_mode_with_empty_log(path: Path) -> bool:
    """Whether the file's header says WAL mode (bytes 18-19: 2) and no commit waits in -wal."""
    try:
        with path.open("rb") as file:
            header = file.read(20)
    except OSError:
        return False
    log = Path(f"{path}-wal")
    return (header.startswith(b"SQLite format 3\x00") and header[18:20] == b"\x02\x02"
            and (not log.exists() or log.stat().st_size == 0))


def _roll_back_interrupted_write(path: Path) -> None:
    """A driver killed inside a transaction leaves a hot journal, which a read-only
    connection cannot open ("attempt to write a readonly database"). Any connection that
    may write rolls it back on its first read, as the resuming sweep would; only never
    committed changes are undone. A journal of a live transaction is not hot: the read
    then just sees the committed state."""
    connection = sqlite3.connect(path, timeout=60)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
    finally:
        connection.close()


def read_only_studies(url: str) -> tuple[optuna.storages.RDBStorage, list[str]]:
    """The storage at ``url`` opened for reading only (see :func:`read_only_url`), and the
    names of the studies it holds; ResultsError, in one line, when it cannot be read."""
    # Imported here: Optuna and SQLAlchemy are slow to import.
    import optuna
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    readable = read_only_url(url)
    try:
        # No pooled connections left open between reads: a reader that lingers (the dashboard, a
        # status poll) would keep a finished sweep's driver from putting the file back in its
        # rollback-journal mode (study.leave_write_ahead).
        storage = optuna.storages.RDBStorage(readable, engine_kwargs={
            "connect_args": {"timeout": 60}, "poolclass": NullPool} if readable.startswith("sqlite") else {})
        return storage, optuna.study.get_all_study_names(storage)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise ResultsError(f"cannot read the study storage {describe_storage(url)}: {reason}") from None


def _load(name: str | None, url: str) -> optuna.Study:
    # Imported here: Optuna is slow to import.
    import optuna

    storage, names = read_only_studies(url)
    if name is None:
        if len(names) != 1:
            raise ResultsError(f"storage {describe_storage(url)} holds {len(names)} studies "
                               f"({', '.join(sorted(names)) or 'none'}); choose one with --study NAME")
        name = names[0]
    elif name not in names:
        raise ResultsError(f"storage {describe_storage(url)} has no study {name!r}; "
                           f"it has: {', '.join(sorted(names)) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def storage_of(target: str | Path) -> str:
    """The study storage URL of ``target``: a storage URL as it is, or a run directory's (from
    its ``spec.yaml``, read as data)."""
    if "://" in str(target):
        return str(target)
    return storage_url(_run_info(Path(target)).storage, target)


def _run_info(run_dir: Path) -> RunInfo:
    if not (run_dir / SPEC_COPY).exists():
        raise ResultsError(f"{run_dir} is neither a storage URL nor a sweep run directory (no {SPEC_COPY})")
    try:
        return read_spec_copy(run_dir)
    except RunFileError as error:
        raise ResultsError(str(error)) from None


def load_sweep(target: str | Path, study_name: str | None = None) -> SweepRecord:
    """A run directory (with its ``spec.yaml``) or a storage URL, for reading only. The metric,
    direction and searched names come from the study's own record where it has one."""
    text = str(target)
    if "://" in text:
        study = _load(study_name, text)
        return SweepRecord(study, text, _recorded_metric(study, "value"), _direction(study),
                           _recorded_params(study, None))
    run_dir = Path(target)
    info = _run_info(run_dir)
    url = storage_url(info.storage, run_dir)
    if info.storage is None and not (run_dir / STUDY_FILE).exists():
        raise ResultsError(f"{run_dir} has no {STUDY_FILE} yet: the sweep has not opened its study")
    study = _load(study_name or info.name, url)
    # The study's record wins over the copy's (whose `mode:` may have been left to the metric's name).
    info = dataclasses.replace(info, metric=_recorded_metric(study, info.metric), mode=_direction(study))
    return SweepRecord(study, url, info.metric, info.mode, _recorded_params(study, info.param_names), info, run_dir)


def _direction(study: optuna.Study) -> str:
    return direction_of(study.directions[0]).mode


def _recorded_metric(study: optuna.Study, default: str) -> str:
    metric = study.user_attrs.get("metric", default)
    try:
        return Fields(f"study {study.study_name!r}").name(metric, ("user_attrs", "metric"), NAME)
    except RunFileError as error:
        raise ResultsError(str(error)) from None


def _recorded_params(study: optuna.Study, names: tuple[str, ...] | None) -> tuple[str, ...]:
    """The searched names in the spec's order, else in the order the trials first drew them."""
    if names is not None:
        return names
    found = dict.fromkeys(name for trial in study.get_trials(deepcopy=False) for name in trial.params)
    return tuple(found)


def trial_value(trial: optuna.trial.FrozenTrial, mode: str) -> float | None:
    """A COMPLETE trial's value; for a PRUNED one, its best epoch before it was stopped
    (the epoch its checkpoint holds); None for any other trial."""
    if trial.state.name == "COMPLETE":
        return first_value(trial)
    if trial.state.name == "PRUNED" and trial.intermediate_values:
        values = trial.intermediate_values.values()
        return float(Direction(mode).best(values))
    return None


def candidates(record: SweepRecord) -> list[optuna.trial.FrozenTrial]:
    """:func:`rank_candidates` of the sweep's trials."""
    return rank_candidates(record.study.get_trials(deepcopy=False), record.mode)


def rank_candidates(trials: Sequence[optuna.trial.FrozenTrial], mode: str) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE and PRUNED trials, best validation value first: the pool of ``export
    --reseed``, ``ensemble`` and checkpoint retention.

    Under ASHA most trials are pruned and a trial stopped late can rival the complete ones
    (it keeps the weights of its best epoch), so pruned trials compete by the value they
    reached; on a tie a COMPLETE trial, then the one trained longer, comes first.
    """
    scored = [(trial, value) for trial in trials if (value := trial_value(trial, mode)) is not None]
    direction = Direction(mode)
    scored.sort(key=lambda tv: (direction.sort_key(tv[1]), tv[0].state.name != "COMPLETE",
                                -max(tv[0].intermediate_values or {0: 0}), tv[0].number))
    return [trial for trial, _ in scored]


def top_candidates(record: SweepRecord, top_k: int) -> list[optuna.trial.FrozenTrial]:
    """The best ``top_k`` of :func:`candidates`; an error when there is none."""
    if top_k < 1:
        raise ResultsError(f"--top-k must be at least 1, but got {top_k}")
    pool = candidates(record)
    if not pool:
        raise ResultsError(f"sweep {record.study.study_name!r} has no COMPLETE or PRUNED trial with a value yet")
    return pool[:top_k]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def param_cells(params: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """One cell per searched parameter; a parameter inactive for the trial shows as ``-``."""
    return [format_value(params[name]) if name in params else "-" for name in names]
