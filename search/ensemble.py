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
from finesweep.search.results import ResultsError, SweepRecord, text_table, top_candidates, trial_value
from finesweep.search.run_dir import ENSEMBLE_FILE, checkpoint_path, trial_name
from finesweep.search.spec_loading import load_yaml

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
    from finesweep.models.inference import CheckpointMismatchError, Member, NotEnsemblable, evaluate_ensemble
    from finesweep.models.run import TrainingRun
    from finesweep.search.trial import quiet_training_logs
    from finesweep.search.user_code import add_import_paths

    quiet_training_logs()
    for folder in import_paths:
        add_import_paths(folder)
    models = [Member(name, TrainingRun.from_config(m["config"], max_epochs=1, seed=0, metric=metric, mode=mode),
                     m["checkpoint"]) for name, m in zip(_member_names(members), members, strict=True)]
    splits = {}
    try:
        results = evaluate_ensemble(models, ("val", "test"), outputs)
    except (CheckpointMismatchError, NotEnsemblable) as error:
        raise ResultsError(f"cannot ensemble: {error}") from None
    for result in results:
        best = result.members[models[0].name]
        splits[result.split] = {"ensemble": result.ensemble, "best_single": best, "members": result.members,
                                "kind": result.kind}
    return splits


def build_ensemble(record: SweepRecord, top_k: int = 5, outputs: str = "auto") -> EnsembleReport:
    """Evaluate the ensemble of the best ``top_k`` trials and write ``ensemble.yaml``; ``outputs``
    says what their ``predict_step`` returns (logits, probabilities, regression; "auto" reads it
    from the outputs: rows of non-negative values summing to 1 are probabilities)."""
    if record.spec is None or record.run_dir is None:
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
                        "checkpoint": str(path.resolve()), "config": dict(trial.user_attrs["config"])})
    if missing:
        raise ResultsError(f"no checkpoint for {len(missing)} of the top {top_k}: {'; '.join(missing)} "
                           "(removed by the checkpoint retention policy? ensemble fewer with --top-k)")
    spec = record.spec
    splits = _evaluate(members, spec.metric, spec.mode, [spec.base_dir], outputs)
    path = record.run_dir / ENSEMBLE_FILE
    kind = {"logits": "mean of class probabilities (softmax of the members' logits)",
            "probabilities": "mean of the members' class probabilities"}.get(splits["val"]["kind"],
                                                                               "mean of predictions")
    document = {
        "finesweep_ensemble": ENSEMBLE_FORMAT, "sweep": spec.name, "task": spec.task_label,
        "spec_dir": spec.base_dir, "metric": spec.metric, "mode": spec.mode, "outputs": splits["val"]["kind"],
        "combine": kind,
        "members": members,
        "scores": {split: {"ensemble": s["ensemble"], "best_single": s["best_single"]} for split, s in splits.items()},
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    path.write_text(f"# Ensemble of the top {len(members)} trials of sweep {spec.name!r}, by finesweep.\n"
                    f"# Re-evaluate: python launch.py ensemble {path}\n"
                    + yaml.safe_dump(document, sort_keys=False))
    return EnsembleReport(path, splits, members)


def load_ensemble(path: str | Path) -> dict[str, Any]:
    """A saved ``ensemble.yaml``, its members checked. Read with the spec loader's limits (no
    alias bombs, no Python tags, UTF-8 only): a bad file is a SpecError like a bad spec."""
    document, _ = load_yaml(path)
    problems = []
    if not isinstance(document, dict) or document.get("finesweep_ensemble") != ENSEMBLE_FORMAT:
        raise ResultsError(f"{path}: expected an ensemble written by `launch.py ensemble` "
                           f"(finesweep_ensemble: {ENSEMBLE_FORMAT})")
    for key, kind in (("metric", str), ("members", list)):
        if not isinstance(document.get(key), kind):
            problems.append(f"{key}: expected a {kind.__name__}, found {document.get(key)!r}")
    for index, member in enumerate(document.get("members") or []):
        for key in ("trial", "checkpoint", "config"):
            if not isinstance(member, dict) or key not in member:
                problems.append(f"members[{index}].{key}: missing")
            elif key == "checkpoint" and not Path(member[key]).exists():
                problems.append(f"members[{index}].checkpoint: no file at {member[key]}")
    if problems:
        raise ResultsError(f"{path}: " + "; ".join(problems))
    return document


def reevaluate(path: str | Path) -> EnsembleReport:
    """Rebuild a saved ensemble from its member list and score it again (nothing is written)."""
    document = load_ensemble(path)
    members = list(document["members"])
    folders = [str(document["spec_dir"])] if isinstance(document.get("spec_dir"), str) else []
    outputs = document.get("outputs", "auto")
    return EnsembleReport(Path(path), _evaluate(members, document["metric"], document.get("mode", "max"), folders,
                                                outputs if outputs in ("logits", "probabilities", "regression")
                                                else "auto"), members)
