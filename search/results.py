"""Reading a sweep's record, finished or still running, for `status`, `report`, `export
--reseed` and `ensemble`.

The study database is the record of truth; it is opened read-only where the backend allows
it (SQLite), so reading never blocks or alters a sweep that is writing to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finesweep.models.run import Direction
from finesweep.search.run_dir import STUDY_FILE
from finesweep.search.study import describe_storage, ranked_trials, storage_url

if TYPE_CHECKING:
    import optuna
    from finesweep.search.spec import SweepSpec


class ResultsError(RuntimeError):
    """The sweep cannot be read as asked (no run directory, no study, no such trial)."""


@dataclass(frozen=True)
class SweepRecord:
    """One sweep as stored: its study, and its spec and run directory when known."""

    study: optuna.Study
    url: str
    metric: str
    mode: str
    param_names: tuple[str, ...]
    spec: SweepSpec | None = None
    run_dir: Path | None = None

    def ranked(self) -> list[optuna.trial.FrozenTrial]:
        """COMPLETE trials, best first."""
        return ranked_trials(self.study, self.mode)


def read_only_url(url: str) -> str:
    """The SQLite URL opened read-only (the file must exist); other databases unchanged."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "file:"):
        return url
    path = Path(url[len(prefix):])
    if not path.exists():
        raise ResultsError(f"no study database at {path}")
    if Path(f"{path}-journal").exists():
        _roll_back_interrupted_write(path)
    readable = f"file:{path}?mode=ro"
    if _wal_mode_with_empty_log(path) and (not Path(f"{path}-shm").exists() or not _opens(readable)):
        # In WAL mode a reader needs a -shm file (SQLite creates one, and an empty -wal, beside
        # the study), which a read-only or full disk cannot give it. With nothing in the log
        # the file alone is the study, and no writer is using it (a live one keeps -shm beside
        # it and changes the file only after a thousand pages of log): read it as it is.
        readable += "&immutable=1"
    return f"{prefix}{readable}&uri=true"


def _opens(uri: str) -> bool:
    import sqlite3

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
    with path.open("rb") as file:
        header = file.read(20)
    log = Path(f"{path}-wal")
    return header[18:20] == b"\x02\x02" and (not log.exists() or log.stat().st_size == 0)


def _roll_back_interrupted_write(path: Path) -> None:
    """A driver killed inside a transaction leaves a hot journal, which a read-only
    connection cannot open ("attempt to write a readonly database"). Any connection that
    may write rolls it back on its first read, as the resuming sweep would; only never
    committed changes are undone. A journal of a live transaction is not hot: the read
    then just sees the committed state."""
    import sqlite3

    connection = sqlite3.connect(path, timeout=60)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
    finally:
        connection.close()


def _load(name: str | None, url: str) -> optuna.Study:
    import optuna
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        # No pooled connections left open between reads: a reader that lingers (the dashboard, a
        # status poll) would keep a finished sweep's driver from putting the file back in its
        # rollback-journal mode (study.leave_write_ahead).
        storage = optuna.storages.RDBStorage(read_only_url(url), engine_kwargs={
            "connect_args": {"timeout": 60}, "poolclass": NullPool} if url.startswith("sqlite") else {})
        names = optuna.study.get_all_study_names(storage)
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise ResultsError(f"cannot read the study storage {describe_storage(url)}: {reason}") from None
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
    its ``spec.yaml``)."""
    from finesweep.search.run_dir import SPEC_COPY
    from finesweep.search.spec import parse_spec

    if "://" in str(target):
        return str(target)
    spec_path = Path(target) / SPEC_COPY
    if not spec_path.exists():
        raise ResultsError(f"{target} is neither a storage URL nor a sweep run directory (no {SPEC_COPY})")
    return storage_url(parse_spec(spec_path, read_inputs=False).storage, target)


def load_sweep(target: str | Path, study_name: str | None = None) -> SweepRecord:
    """A run directory (with its ``spec.yaml``) or a storage URL, for reading only."""
    from finesweep.search.run_dir import SPEC_COPY
    from finesweep.search.spec import parse_spec

    text = str(target)
    if "://" in text:
        study = _load(study_name, text)
        names = sorted({name for trial in study.get_trials(deepcopy=False) for name in trial.params})
        metric = str(study.user_attrs.get("metric", "value"))
        mode = Direction.from_optuna(study.direction.name).mode
        return SweepRecord(study, text, metric, mode, tuple(names))
    run_dir = Path(target)
    spec_path = run_dir / SPEC_COPY
    if not spec_path.exists():
        raise ResultsError(f"{run_dir} is not a sweep run directory (no {SPEC_COPY})")
    spec = parse_spec(spec_path, read_inputs=False)
    url = storage_url(spec.storage, run_dir)
    if spec.storage is None and not (run_dir / STUDY_FILE).exists():
        raise ResultsError(f"{run_dir} has no {STUDY_FILE} yet: the sweep has not opened its study")
    study = _load(study_name or spec.name, url)
    return SweepRecord(study, url, spec.metric, spec.mode, tuple(spec.space.names), spec, run_dir)


def trial_value(trial: optuna.trial.FrozenTrial, mode: str) -> float | None:
    """A COMPLETE trial's value; for a PRUNED one, its best epoch before it was stopped
    (the epoch its checkpoint holds); None for any other trial."""
    if trial.state.name == "COMPLETE":
        return float(trial.value)
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
