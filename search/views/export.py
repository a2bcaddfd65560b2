"""`best.yaml`: the best trial's config, as a LightningCLI config that reproduces it.

The export is what LightningCLI reads (``seed_everything``, ``trainer``, ``model``, ``data``
with the values the trial used, paths absolute), so ``python main.py fit --config best.yaml``
runs it with a plain ``LightningCLI()``, and ``launch.py train best.yaml`` retrains it here.
finesweep's own record (metric and value, trial, checkpoint, library versions) rides along in
``#%`` comment lines, which LightningCLI ignores and :func:`read_export` reads back.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from finesweep.models.run import TrainingRun
from finesweep.search.run_dir import (
    BEST_FILE,
    FRONT_DIR,
    ROBUST_FILE,
    SINGLE_BEST_FILE,
    checkpoint_path,
    front_path,
    own_folder,
    rank_path,
    write_atomically,
)
from finesweep.search.run_dir.files import (
    RECORD_PREFIX,
    Fields,
    RunInfo,
    read_record,
    read_spec_copy,
    read_yaml,
    record_of_text,
    run_dir_of,
)
from finesweep.search.spec import MAX_SEED
from finesweep.search.spec.components import check_component, check_trainer
from finesweep.search.spec.fields import FieldChecks
from finesweep.search.spec.loading import parse_yaml_text, read_text
from finesweep.search.spec.problems import Problem, SpecError
from finesweep.search.study import first_value
from finesweep.search.user_code import add_import_paths
from finesweep.search.views.pareto_front import choose, objective_values, pareto_front

if TYPE_CHECKING:
    import optuna

EXPORT_FORMAT = 2
CONFIG_KEYS = ("seed_everything", "trainer", "model", "data")
VERSIONED = ("finesweep", "optuna", "ray", "torch", "pytorch-lightning", "tensorboard", "jsonargparse")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def lightning_config(config: Mapping[str, Any], seed: int, max_epochs: int) -> dict[str, Any]:
    """A trial's config as LightningCLI reads it: the seed, the Trainer options with the
    epochs, then the model and the data."""
    return {"seed_everything": int(seed),
            "trainer": {**dict(config.get("trainer") or {}), "max_epochs": int(max_epochs)},
            "model": dict(config["model"]), "data": dict(config["data"])}


def export_record(info: RunInfo, run_dir: Path, frozen: optuna.trial.FrozenTrial, rank: int,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """finesweep's record of an exported trial (the ``#%`` lines)."""
    checkpoint = checkpoint_path(run_dir, frozen.number)
    return {
        "finesweep_export": EXPORT_FORMAT,
        "sweep": info.name,
        "task": info.task_label,
        "metric": info.metric,
        "mode": info.mode,
        "value": first_value(frozen),
        "best_epoch": frozen.user_attrs.get("best_epoch"),
        "trial": frozen.number,
        "rank": rank,
        "params": dict(frozen.params),
        **(extra or {}),
        "threads": info.threads,
        # A trial of several workers (resources.workers) is retrained on as many.
        **({"workers": info.workers} if info.workers > 1 else {}),
        # Where the spec's own modules are imported from, wherever the export is read.
        "spec_dir": info.spec_dir,
        "checkpoint": str(checkpoint.resolve()) if checkpoint.exists() else None,
        "versions": library_versions(),
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def export_text(info: RunInfo, run_dir: Path, frozen: optuna.trial.FrozenTrial, rank: int,
                title: str, extra: Mapping[str, Any] | None = None) -> str:
    record = export_record(info, run_dir, frozen, rank, extra)
    config = lightning_config(recorded_config(frozen), recorded_seed(frozen), info.max_epochs)
    path = (run_dir / BEST_FILE).resolve()
    header = [f"# {title}, exported by finesweep as a LightningCLI config.",
              f"# Retrain it here:   python launch.py train {path} [--max-epochs N] [--seed S]",
              "# Or with Lightning: python main.py fit --config best.yaml   (main.py: LightningCLI())",
              "# finesweep's record of the trial (comments to LightningCLI):"]
    record_lines = [RECORD_PREFIX + line for line in yaml.safe_dump(record, sort_keys=False).splitlines()]
    return "\n".join(header + record_lines) + "\n" + yaml.safe_dump(config, sort_keys=False)


def write_rank(info: RunInfo, run_dir: Path, frozen: optuna.trial.FrozenTrial, rank: int,
               note: str = "", out_dir: Path | None = None) -> Path:
    """Write ``top/rank_NN.yaml`` for ``frozen`` into ``out_dir`` (default ``run_dir``);
    ``note`` goes into its header."""
    path = rank_path(Path(out_dir or run_dir), rank)
    write_atomically(path, export_text(info, run_dir, frozen, rank, f"Rank {rank} of sweep {info.name!r}{note}"))
    return path


def recorded_config(frozen: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The LightningCLI config a trial ran, as the study recorded it, checked as data: a
    ``model`` and a ``data`` section, each a ``class_path`` with ``init_args``."""
    check = Fields(f"study trial {frozen.number}", prefix="user_attrs.")
    config = check.mapping(frozen.user_attrs.get("config"), ("config",), limit=16)
    for section in ("model", "data"):
        entry = check.mapping(config.get(section), ("config", section))
        check.name(entry.get("class_path"), ("config", section, "class_path"))
        if entry.get("init_args") is not None:
            check.mapping(entry["init_args"], ("config", section, "init_args"))
    if config.get("trainer") is not None:
        check.mapping(config["trainer"], ("config", "trainer"))
    return config


def recorded_seed(frozen: optuna.trial.FrozenTrial) -> int:
    check = Fields(f"study trial {frozen.number}", prefix="user_attrs.")
    return check.integer(frozen.user_attrs.get("seed"), ("seed",), 0, 2 * MAX_SEED)


def robust_choice(run_dir: Path) -> int | None:
    """The trial of ``best.yaml`` when it is the robust choice of ``export --reseed`` (the
    trial ``robust.yaml`` chose); None when best.yaml is a plain export or missing. Both files
    are read with the run directory's bounds: a file no finesweep command wrote is an error."""
    robust, best = run_dir / ROBUST_FILE, run_dir / BEST_FILE
    if not (robust.is_file() and best.is_file()):
        return None
    document, marks = read_yaml(robust)
    check = Fields(robust, marks)
    chosen = check.mapping(document, (), limit=64).get("chosen_trial")
    if chosen is not None:
        check.integer(chosen, ("chosen_trial",), 0, 2**31 - 1)
    exported = read_record(best).get("trial")
    return chosen if chosen is not None and chosen == exported else None


def write_exports(info: RunInfo, run_dir: Path, ranked: list[optuna.trial.FrozenTrial],
                  top_k: int = 1) -> list[Path]:
    """Write ``best.yaml`` and, for ``top_k`` > 1, ``top/rank_NN.yaml``; return the paths.

    A ``best.yaml`` that holds the robust choice of ``export --reseed`` is kept: it was
    chosen on more evidence (new seeds) than the single best trial, which is written to
    ``best_single.yaml`` instead and comes first in the paths (see :func:`robust_choice`).
    """
    if not ranked:
        return []
    if len(info.objectives) > 1 or info.constraints:
        return _write_front(info, run_dir, ranked)
    name = SINGLE_BEST_FILE if robust_choice(run_dir) is not None else BEST_FILE
    title = f"Best trial of sweep {info.name!r}" + (
        f" ({BEST_FILE} holds the robust best of `export --reseed` instead; see robust.md)"
        if name == SINGLE_BEST_FILE else "")
    path = run_dir / name
    # Every text is built (and every trial's record checked) before the first file is written.
    texts = [(path, export_text(info, run_dir, ranked[0], 1, title))]
    if top_k > 1:
        texts += [(rank_path(run_dir, rank), export_text(info, run_dir, frozen, rank,
                                                         f"Rank {rank} of sweep {info.name!r}"))
                  for rank, frozen in enumerate(ranked[:top_k], start=1)]
    for target, text in texts:
        own_folder(target.parent)
        write_atomically(target, text)
    written = [target for target, _ in texts]
    return written


def _write_front(info: RunInfo, run_dir: Path, ranked: list[optuna.trial.FrozenTrial]) -> list[Path]:
    """``best.yaml`` chosen on the front by the spec's `select:` rule (else the knee), and with
    several objectives the whole front as ``pareto/rank_NN.yaml`` (by the first objective)."""
    found = pareto_front(ranked, info.objectives)
    if not found.members:
        return []
    chosen, rule = choose(found, info.select)

    def text(frozen: optuna.trial.FrozenTrial, rank: int, title: str) -> str:
        extra = {"objectives": objective_values(frozen, found.names), "selected_by": rule}
        return export_text(info, run_dir, frozen, rank, title, extra)

    # As for one objective: a robust best.yaml of `export --reseed` stays; the choice goes beside it.
    best = run_dir / (SINGLE_BEST_FILE if robust_choice(run_dir) is not None else BEST_FILE)
    texts = [(best, text(chosen, found.members.index(chosen) + 1,
                                        f"Trial {chosen.number} of sweep {info.name!r}, chosen by {rule}"))]
    folder = run_dir / FRONT_DIR
    if len(info.objectives) > 1:
        for stale in folder.glob("rank_*.yaml") if folder.is_dir() else ():
            stale.unlink()  # A front only grows better: an earlier export's members may be dominated now.
        texts += [(front_path(run_dir, rank), text(frozen, rank, f"Pareto trial {rank} of "
                                                          f"{len(found.members)} of sweep {info.name!r}"))
                  for rank, frozen in enumerate(found.members, start=1)]
    for target, content in texts:
        own_folder(target.parent)
        write_atomically(target, content)
    return [target for target, _ in texts]


@dataclass(frozen=True)
class ExportedRun:
    """An export read back: the training run it describes and finesweep's record of it."""

    run: TrainingRun
    record: Mapping[str, Any]
    source: str

    @property
    def value(self) -> float | None:
        value = self.record.get("value")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def label(self) -> str:
        return str(self.record.get("task") or self.run.model["class_path"].rsplit(".", 1)[-1])


def read_export(path: str | Path) -> ExportedRun:
    """Load and check an exported config; raise SpecError listing every problem."""
    source = str(path)
    text = read_text(path)
    data, marks, duplicates = parse_yaml_text(source, text)
    if isinstance(data, dict) and ("space" in data or "task" in data) and "seed_everything" not in data:
        raise SpecError(source, [Problem((), "an exported config (best.yaml)", "a sweep spec",
                                         "run `launch.py export RUN_DIR` first, or pass RUN_DIR/best.yaml")])
    if not isinstance(data, dict):
        raise SpecError(source, [Problem((), "an exported config (best.yaml)", type(data).__name__)])

    # The record is checked in full before anything is imported: a tampered line (a spec
    # folder elsewhere, a thread count no machine has) is refused with nothing run.
    record = record_of_text(source, text)
    for key in ("metric", "mode"):
        if not record.get(key):
            raise Fields(source, prefix="#% ").fail(
                (key,), "finesweep's record of the trial (#% lines with metric and mode)", "none",
                "export it with `launch.py export RUN_DIR`")
    run_dir = run_dir_of(source)
    spec_dir = record.get("spec_dir") or (read_spec_copy(run_dir).spec_dir if run_dir is not None
                                          else Path(source).resolve().parent)
    add_import_paths(spec_dir)
    checker = FieldChecks(source, marks, Path(source).resolve().parent)
    checker.problems.extend(duplicates)
    data = checker.mapping(data, (), CONFIG_KEYS)
    for key in ("model", "data"):
        if key not in data:
            checker.problem((key,), f"a `{key}:` entry", "none", "export it with `launch.py export RUN_DIR`")
    model, _, _ = check_component(checker, "model", None, data.get("model"))
    data_section, _, _ = check_component(checker, "data", None, data.get("data"))
    trainer = dict(data.get("trainer") or {})
    epochs = checker.number(trainer.pop("max_epochs", None), ("trainer", "max_epochs"), integer=True, low=1)
    trainer = check_trainer(checker, trainer)
    seed = checker.number(data.get("seed_everything"), ("seed_everything",), integer=True, low=0)
    if checker.problems:
        raise SpecError(source, checker.problems)
    run = TrainingRun(model=model.as_config(), data=data_section.as_config(), trainer=trainer,
                      max_epochs=int(epochs), seed=int(seed), metric=str(record["metric"]), mode=record["mode"])
    return ExportedRun(run=run, record=record, source=source)
