"""Resuming and extending a sweep: what may change between runs, and what was left running.

The study database is the only state a resume needs. Trials that were RUNNING when the
driver died are handed out again as they are (same trial record, same parameters, same
seed), so nothing finished is lost or repeated and the total stays at the requested number.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from finesweep.search.run_dir import SPEC_COPY, default_run_dir, write_atomically
from finesweep.search.run_dir.files import SWEEP_NAME, RunFileError, read_spec_copy, read_yaml
from finesweep.search.run_dir.lock import LockError, RunLock
from finesweep.search.space import CategoricalParam
from finesweep.search.spec.loading import SPEC_DIR_RECORD, read_text
from finesweep.search.study import describe_storage, normalize_storage, storage_url, without_password
from finesweep.search.views.results import ResultsError, read_only_studies

if TYPE_CHECKING:
    import optuna
    from finesweep.search.spec import SweepSpec

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass(frozen=True)
class SpecChanges:
    incompatible: list[str] = field(default_factory=list)
    compatible: list[str] = field(default_factory=list)


def compare_specs(old: SweepSpec, new: SweepSpec) -> SpecChanges:
    """Changes that would make old and new trials incomparable are incompatible: the name, the
    model class, the data (class and arguments), the metric and its direction, and the kind of a
    searched parameter. The model's fixed arguments and Trainer options may change (listed)."""
    changes = SpecChanges()
    # The name is the study's key in its database and names the exports: another name
    # would start a second study beside the first and overwrite its best.yaml.
    for label, before, after in (("name", old.name, new.name), ("model", old.model.class_path, new.model.class_path),
                                 ("data", old.data.as_config(), new.data.as_config()),
                                 ("metric", old.metric, new.metric), ("mode", old.mode, new.mode),
                                 # The study holds one value per objective, in this order.
                                 ("objectives", [(o.name, o.mode) for o in old.objectives],
                                  [(o.name, o.mode) for o in new.objectives])):
        if before != after:
            changes.incompatible.append(f"{label} changed from {before!r} to {after!r}")
    old_params = {p.name: p for p in old.space.params}
    for param in new.space.params:
        before = old_params.pop(param.name, None)
        if before is None:
            changes.compatible.append(f"new parameter {param.name!r} (earlier trials lack it)")
        elif type(before) is not type(param):
            changes.incompatible.append(
                f"parameter {param.name!r} changed kind from {_kind(before)} to {_kind(param)}")
        elif before != param:
            changes.compatible.append(f"parameter {param.name!r} changed range or choices")
    changes.compatible.extend(f"parameter {name!r} no longer searched" for name in old_params)
    if dict(old.space.fixed) != dict(new.space.fixed) or old.model.init_args != new.model.init_args:
        changes.compatible.append("fixed values changed")
    if dict(old.trainer) != dict(new.trainer):
        changes.compatible.append("trainer options changed")
    if dict(old.constraints) != dict(new.constraints) or old.select != new.select:
        changes.compatible.append("constraints or select changed (earlier trials keep their recorded violations)")
    for label in ("budget", "strategy", "scheduler", "resources"):
        if getattr(old, label) != getattr(new, label):
            changes.compatible.append(f"{label} changed")
    return changes


def _kind(param: Any) -> str:
    return "categorical" if isinstance(param, CategoricalParam) else type(param).__name__[:-5].lower()


def finished_count(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED)


def interrupted_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials left RUNNING by a driver that died: they are run again, once, as they were."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]


# The study's record of its spec copy: the digests of the last two copies the driver wrote (the
# previous one too, for a driver killed between recording a new copy and writing it).
SPEC_COPY_ATTR = "spec_copies"


class ResumeRefused(RuntimeError):
    """A resume that would run something other than the study's own sweep; nothing was run."""


def spec_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_spec_copy(study: optuna.Study, text: str) -> None:
    """Record the digest of the spec copy about to be written (before it is written)."""
    known = study.user_attrs.get(SPEC_COPY_ATTR)
    previous = [d for d in known if isinstance(d, str)][-1:] if isinstance(known, list) else []
    digest = spec_digest(text)
    if previous != [digest]:
        study.set_user_attr(SPEC_COPY_ATTR, [*previous, digest])


def check_spec_copy(run_dir: Path) -> None:
    """Before anything of the user's is imported for a resume: the run directory's spec copy,
    read as data, must be the one its study recorded. An edited ``name:`` would start a second
    study beside the first; an edited model, data or spec folder would import and train
    something else under the study's name. Raises :class:`ResumeRefused` (one line)."""
    import optuna  # Slow to import, and only this check opens a study: the module imports without Optuna.

    path = run_dir / SPEC_COPY
    info = read_spec_copy(run_dir)
    url = storage_url(info.storage, run_dir)
    try:
        storage, names = read_only_studies(url)
    except ResultsError as error:
        raise ResumeRefused(f"nothing to resume in {run_dir}: {error}") from None
    if info.name not in names:
        raise ResumeRefused(f"{path}: name {info.name!r} is not the name of the study it resumes "
                            f"({describe_storage(url)} holds {', '.join(map(repr, sorted(names))) or 'no study'}): "
                            "the spec copy was edited; put its name back (a new name is a new sweep: "
                            "`finesweep sweep SPEC --out NEW_DIR`)")
    known = optuna.load_study(study_name=info.name, storage=storage).user_attrs.get(SPEC_COPY_ATTR)
    if isinstance(known, list) and spec_digest(read_text(path)) not in known:
        raise ResumeRefused(f"{path} is not the spec that study {info.name!r} last ran (it was edited): to "
                            "change the sweep, give the new spec to `finesweep sweep NEW_SPEC.yaml --resume "
                            f"--out {run_dir}`, which checks what may change")


def check_before_resume(spec_path: str | Path, run_dir: Path | None) -> None:
    """:func:`check_spec_copy` for ``resume RUN_DIR`` and ``sweep SPEC --resume [--out RUN_DIR]``
    (the run directory of the latter named by the spec's ``name:``, read as data)."""
    if run_dir is None:
        try:
            data, _ = read_yaml(spec_path)
        except RunFileError:
            return  # Reported with every other problem when the spec is checked.
        name = data.get("name") if isinstance(data, dict) else None
        if not isinstance(name, str) or not SWEEP_NAME.fullmatch(name):
            return
        run_dir = default_run_dir(name)
    try:  # Held by a live sweep: refused now, not after seconds of importing the spec's classes.
        RunLock(run_dir).check_free()
    except LockError as error:
        raise ResumeRefused(str(error)) from None
    if (run_dir / SPEC_COPY).is_file():
        check_spec_copy(run_dir)


def write_spec_copy(path: Path, spec: SweepSpec, study: optuna.Study | None = None) -> None:
    """The spec as run, for resume and the views; a storage password is left out (a resume
    gets it from FINESWEEP_STORAGE, PGPASSWORD or ~/.pgpass) and the file is owner-only. The
    study records the copy's digest first, so a resume can tell an edited copy from its own
    (:func:`finesweep.search.resume.check_spec_copy`)."""
    raw = dict(spec.raw)
    if raw.get("storage"):
        # One absolute path for an SQLite file in any form: the same file from any folder.
        raw["storage"] = without_password(normalize_storage(str(raw["storage"])))
    # The original spec's folder: its relative paths and modules are found from there.
    text = f"{SPEC_DIR_RECORD}{spec.base_dir}\n" + yaml.safe_dump(raw, sort_keys=False)
    if study is not None:
        record_spec_copy(study, text)
    write_atomically(path, text, private=True)
