"""`launch.py status`: where a sweep stands, read from its study while it runs or after."""

from __future__ import annotations

import re

from finesweep.search.study import describe_storage, first_value
from finesweep.search.views.pareto_front import choose, front_lines, pareto_front
from finesweep.search.views.progress import trials_summary
from finesweep.search.views.results import SweepRecord

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _running_lines(record: SweepRecord) -> list[str]:
    # Imported here: Optuna is slow to import.
    import optuna

    running = record.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if not running:
        return []
    total = f"/{record.info.max_epochs}" if record.info is not None else ""
    lines = ["running:"]
    for trial in running:
        steps = trial.intermediate_values
        last = (f"epoch {max(steps)}{total}, {record.metric} {steps[max(steps)]:.4f}" if steps
                else "no epoch finished yet")
        lines.append(f"  trial {trial.number}: {last}")
    return lines


def _front_lines(record: SweepRecord, trials: list) -> list[str]:
    """The Pareto front and the trial export would choose, for several objectives or constraints."""
    if not record.multi:
        return []
    found = pareto_front(trials, record.objectives)
    if not found.members:
        return ["Pareto front: no feasible COMPLETE trial yet"]
    chosen, rule = choose(found, record.info.select if record.info is not None else None)
    return front_lines(found, chosen, rule)


def _worker_lines(record: SweepRecord, most: int = 10) -> list[str]:
    """Where each multi-worker trial's ranks ran (its ``world_size`` and ``ranks`` attributes)."""
    spread = [t for t in record.study.get_trials(deepcopy=False) if int(t.user_attrs.get("world_size") or 1) > 1]
    if not spread:
        return []
    lines = ["workers:"]
    for trial in spread[-most:]:
        ranks = ", ".join(f"rank {r.get('rank')} on {r.get('node_ip')} ({str(r.get('node') or '?')[:8]})"
                          + (f" GPU {','.join(map(str, r['gpu_ids']))}" if r.get("gpu_ids") else "")
                          for r in trial.user_attrs.get("ranks") or [])
        lines.append(f"  trial {trial.number}: {trial.user_attrs['world_size']} ranks: {ranks}")
    if len(spread) > most:
        lines.insert(1, f"  ({len(spread) - most} earlier trials not shown)")
    return lines


def status_text(record: SweepRecord, top_k: int = 5) -> str:
    """Counts by state, best so far, running trials, the top-k table and failure reasons."""
    study = record.study
    trials = study.get_trials(deepcopy=False)
    planned = f" of {record.info.trials} planned" if record.info is not None else ""
    lines = [f"sweep {study.study_name!r}: {len(trials)} trials{planned}; study in {describe_storage(record.url)}"]
    ranked = record.ranked()
    if ranked:
        best = ranked[0]
        lines.append(f"best so far: {record.metric} {first_value(best):.4f} (trial {best.number}, "
                     f"epoch {best.user_attrs.get('best_epoch', '?')})")
    else:
        lines.append("best so far: no COMPLETE trial yet")
    summary = trials_summary(study, record.metric, record.mode, list(record.param_names), top_k).splitlines()
    # The counts line first, then what is running now, then the table and failure reasons.
    text = "\n".join([lines[0], summary[0], lines[1], *_front_lines(record, trials), *_running_lines(record),
                      *_worker_lines(record), *summary[1:]])
    # The study is data of the run directory: a value holding terminal control sequences (a
    # crafted failure reason, say) is shown escaped, never sent to the terminal as it is.
    return CONTROL.sub(lambda match: repr(match.group())[1:-1], text)
