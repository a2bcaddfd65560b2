"""`launch.py ensemble`: average the class probabilities of the top-k trials' checkpoints.

The members are chosen on validation alone (the sweep's ranking); the held-out test split
is evaluated only here, after the choice, and reported apart from validation. The member
list goes to ``ensemble.yaml``, which :func:`load_ensemble` (and `launch.py ensemble
ensemble.yaml`) reads back to rebuild and re-evaluate the same ensemble.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from finesweep.models.components import ComponentError
from finesweep.models.run import TrainingRun
from finesweep.search.run_dir import ENSEMBLE_FILE, TRIALS_DIR, checkpoint_path, trial_name, write_atomically
from finesweep.search.run_dir.files import Fields, RunFileError, read_spec_copy, read_yaml, run_dir_of
from finesweep.search.trial import quiet_training_logs
from finesweep.search.user_code import prepare_recorded_configs
from finesweep.search.views.export import recorded_config
from finesweep.search.views.results import ResultsError, SweepRecord, text_table, top_candidates, trial_value

ENSEMBLE_FORMAT = 1


@dataclass(frozen=True)
class EnsembleReport:
    path: Path
    # split -> {"ensemble": scores, "best_single": scores, "members": {name: scores}}
    splits: Mapping[str, Mapping[str, Any]]
    members: Sequence[Mapping[str, Any]]

    def text(self) -> str:
        lines = [f"ensemble of {len(self.members)}: trials "
                 + ", ".join(str(m["trial"]) for m in self.members)]
        names_of_scores = list(next(iter(self.splits.values()))["ensemble"])
        header = ["model", *[f"{split}_{score}" for split in self.splits for score in names_of_scores]]
        names = ["ensemble", "best_single"] + [trial_name(m["trial"]) for m in self.members]
        rows = []
        for name in names:
            label = {"ensemble": "ensemble (mean probabilities)",
                     "best_single": f"best single (trial {self.members[0]['trial']})"}.get(name, name)
            if name == "ensemble":
                label = f"ensemble (mean {'probabilities' if 'acc' in names_of_scores else 'predictions'})"
            cells = []
            for split in self.splits.values():
                scores = split.get(name) or split["members"][name]
                cells += [f"{scores[s]:.4f}" for s in names_of_scores]
            rows.append([label, *cells])
        lines.append(text_table(header, rows))
        lines.append("test is the held-out split: never seen by the search or by the choice of members")
        lines.append(f"members: {self.path}")
        return "\n".join(lines)


def _member_names(members: Sequence[Mapping[str, Any]]) -> list[str]:
    return [trial_name(m["trial"]) for m in members]


def _evaluate(members: Sequence[Mapping[str, Any]], metric: str, mode: str,
              import_paths: Sequence[str] = (), outputs: str = "auto") -> dict[str, Any]:
    # Imported here: torch and Lightning are slow to import.
    from finesweep.models.inference import (
        CheckpointMismatchError,
        Member,
        NotEnsemblable,
        UnreadableCheckpoint,
        evaluate_ensemble,
    )

    quiet_training_logs()
    try:
        for folder in import_paths:
            prepare_recorded_configs([m["config"] for m in members], folder)
    except ValueError as error:
        raise ResultsError(str(error)) from None
    models = [Member(name, TrainingRun.from_config(m["config"], max_epochs=1, seed=0, metric=metric, mode=mode),
                     m["checkpoint"]) for name, m in zip(_member_names(members), members, strict=True)]
    splits = {}
    try:
        results = evaluate_ensemble(models, ("val", "test"), outputs)
    except (CheckpointMismatchError, NotEnsemblable, ComponentError) as error:
        raise ResultsError(f"cannot ensemble: {error}") from None
    except UnreadableCheckpoint as error:
        raise ResultsError(str(error)) from None
    for result in results:
        best = result.members[models[0].name]
        splits[result.split] = {"ensemble": result.ensemble, "best_single": best, "members": result.members,
                                "kind": result.kind}
    return splits


def build_ensemble(record: SweepRecord, top_k: int = 5, outputs: str = "auto") -> EnsembleReport:
    """Evaluate the ensemble of the best ``top_k`` trials and write ``ensemble.yaml``; ``outputs``
    says what their ``predict_step`` returns (logits, probabilities, regression; "auto" reads it
    from the outputs: rows of non-negative values summing to 1 are probabilities)."""
    if record.info is None or record.run_dir is None:
        raise ResultsError("an ensemble needs the sweep's run directory (its spec and checkpoints)")
    chosen = top_candidates(record, top_k)
    members, missing = [], []
    for rank, trial in enumerate(chosen, start=1):
        path = checkpoint_path(record.run_dir, trial.number)
        if not path.exists():
            missing.append(f"trial {trial.number} ({path})")
            continue
        members.append({"trial": trial.number, "rank": rank, "state": trial.state.name,
                        "value": trial_value(trial, record.mode), "best_epoch": trial.user_attrs.get("best_epoch"),
                        "checkpoint": str(path.resolve()), "config": _config(trial)})
    if missing:
        raise ResultsError(f"no checkpoint for {len(missing)} of the top {top_k}: {'; '.join(missing)} "
                           "(removed by the checkpoint retention policy? ensemble fewer with --top-k)")
    info = record.info
    splits = _evaluate(members, record.metric, record.mode, [info.spec_dir], outputs)
    path = record.run_dir / ENSEMBLE_FILE
    kind = {"logits": "mean of class probabilities (softmax of the members' logits)",
            "probabilities": "mean of the members' class probabilities"}.get(splits["val"]["kind"],
                                                                               "mean of predictions")
    document = {
        "finesweep_ensemble": ENSEMBLE_FORMAT, "sweep": info.name, "task": info.task_label,
        "spec_dir": info.spec_dir, "metric": record.metric, "mode": record.mode, "outputs": splits["val"]["kind"],
        "combine": kind,
        "members": members,
        "scores": {split: {"ensemble": s["ensemble"], "best_single": s["best_single"]} for split, s in splits.items()},
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_atomically(path, f"# Ensemble of the top {len(members)} trials of sweep {info.name!r}, by finesweep.\n"
                           f"# Re-evaluate: python launch.py ensemble {path}\n"
                     + yaml.safe_dump(document, sort_keys=False))
    return EnsembleReport(path, splits, members)


def _config(trial: object) -> dict[str, Any]:
    try:
        return dict(recorded_config(trial))
    except RunFileError as error:
        raise ResultsError(str(error)) from None


def load_ensemble(path: str | Path) -> dict[str, Any]:
    """A saved ``ensemble.yaml``, every field checked: read with the spec loader's limits (no
    alias bombs, no Python tags, UTF-8 only), members' checkpoints inside the run directory
    that holds the file (``trials/``), the spec folder that run's own. One line on a violation."""
    document, marks = read_yaml(path)
    if not isinstance(document, dict) or document.get("finesweep_ensemble") != ENSEMBLE_FORMAT:
        raise ResultsError(f"{path}: expected an ensemble written by `launch.py ensemble` "
                           f"(finesweep_ensemble: {ENSEMBLE_FORMAT})")
    check = Fields(path, marks)
    run_dir = run_dir_of(path)
    try:
        check.name(document.get("metric"), ("metric",))
        check.choice(document.get("mode"), ("mode",), ("min", "max"))
        members = document.get("members")
        if not isinstance(members, list) or not 1 <= len(members) <= 1000:
            raise check.fail(("members",), "a list of 1 to 1000 members", f"{type(members).__name__}")
        for index, member in enumerate(members):
            at = ("members", index)
            check.mapping(member, at)
            check.integer(member.get("trial"), (*at, "trial"), 0, 2**31 - 1)
            config = check.mapping(member.get("config"), (*at, "config"), limit=16)
            for section in ("model", "data"):
                check.name(check.mapping(config.get(section), (*at, "config", section)).get("class_path"),
                           (*at, "config", section, "class_path"))
            given = member.get("checkpoint")
            checkpoint = (check.path_inside(given, (*at, "checkpoint"), run_dir / TRIALS_DIR) if run_dir is not None
                          else check.absolute_path(given, (*at, "checkpoint")))
            if not checkpoint.is_file():
                raise check.fail((*at, "checkpoint"), "a model.pt that exists", repr(member["checkpoint"]))
        if document.get("spec_dir") is not None:
            spec_dir = check.absolute_path(document["spec_dir"], ("spec_dir",))
            if run_dir is not None and str(spec_dir) != str(Path(read_spec_copy(run_dir).spec_dir)):
                raise check.fail(("spec_dir",), f"the spec folder of the run in {run_dir}", repr(document["spec_dir"]),
                                 "the user's modules are imported from there: an ensemble names its own run's")
    except RunFileError as error:
        raise ResultsError(str(error)) from None
    return document


def reevaluate(path: str | Path) -> EnsembleReport:
    """Rebuild a saved ensemble from its member list and score it again (nothing is written)."""
    document = load_ensemble(path)
    members = list(document["members"])
    folders = [str(document["spec_dir"])] if isinstance(document.get("spec_dir"), str) else []
    outputs = document.get("outputs", "auto")
    return EnsembleReport(Path(path), _evaluate(members, document["metric"], document["mode"], folders,
                                                outputs if outputs in ("logits", "probabilities", "regression")
                                                else "auto"), members)
