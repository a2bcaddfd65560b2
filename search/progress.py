"""The live view of a sweep and its closing summary: one short line per finished trial."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from finesweep.models.run import Direction
from finesweep.search.run_dir import trial_name
from finesweep.search.study import Outcome, ranked_trials, state_counts

if TYPE_CHECKING:
    import optuna
    from finesweep.search.spec import SweepSpec
    from finesweep.search.tensorboard_log import HParamsLog


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class SweepMonitor:
    """Receives trial starts and ends from the backend; prints progress and records HParams."""

    def __init__(self, spec: SweepSpec, total: int, hparams: HParamsLog | None = None,
                 out: TextIO | None = None, already_done: int = 0) -> None:
        self.spec = spec
        self.total = total
        self.hparams = hparams
        self.out = out or sys.stdout
        self.started_at = time.monotonic()
        self.running: set[int] = set()
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        self.best: tuple[float, int] | None = None
        self.already_done = already_done
        self.last_output = self.started_at

    def trial_started(self, number: int, params: Mapping[str, Any]) -> None:
        self.running.add(number)
        if self.hparams is not None:
            # TensorBoard lists the trial from now on, as RUNNING until it ends.
            self.hparams.write_trial_start(trial_name(number), params)

    def close_unfinished(self, study: optuna.Study) -> None:
        """Give trials that never reported an end (the sweep stopped around them) their final
        HParams record from the study and their progress line; call after ``fail_unfinished``."""
        for frozen in study.get_trials(deepcopy=False):
            if frozen.number in self.running and frozen.state.is_finished():
                value = frozen.value if frozen.state.name == "COMPLETE" else None
                epochs = int(frozen.user_attrs.get("epochs", 0))
                if self.hparams is not None:
                    self.hparams.write_trial(trial_name(frozen.number), frozen.params, frozen.state.name,
                                             value, epochs)
                self.running.discard(frozen.number)
                if frozen.state.name == "FAIL":  # One line per failed trial, with its reason.
                    self.counts["FAIL"] += 1
                    self.out.write(f"[{self.elapsed():>6}] trial {frozen.number:>3} FAIL     after {epochs:>2} "
                                   f"epochs ({frozen.user_attrs.get('fail_reason')}) | {self.status_line()}\n")
        self.running.clear()
        self.out.flush()

    def trial_ended(self, number: int, params: Mapping[str, Any], outcome: Outcome, epochs: int) -> None:
        self.running.discard(number)
        self.counts[outcome.state] += 1
        if outcome.state == "COMPLETE" and Direction(self.spec.mode).better(
                outcome.value, self.best[0] if self.best else None):
            self.best = (outcome.value, number)
        if self.hparams is not None:
            self.hparams.write_trial(trial_name(number), params, outcome.state, outcome.value, epochs)
        detail = f"{self.spec.metric} {outcome.value:.4f}" if outcome.value is not None else outcome.reason
        self.out.write(f"[{self.elapsed():>6}] trial {number:>3} {outcome.state:<8} after {epochs:>2} "
                       f"epochs ({detail}) | {self.status_line()}\n")
        self.out.flush()
        self.last_output = time.monotonic()

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started_at)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def heartbeat(self, every_s: float = 30.0) -> None:
        """Print the status when nothing else was printed for ``every_s`` seconds, so a sweep
        of long trials still shows it is alive."""
        now = time.monotonic()
        if now - self.last_output >= every_s:
            self.out.write(f"[{self.elapsed():>6}] {self.status_line()}\n")
            self.out.flush()
            self.last_output = now

    def status_line(self) -> str:
        done = self.already_done + sum(self.counts.values())
        best = (f"best {self.spec.metric} {self.best[0]:.4f} (trial {self.best[1]})"
                if self.best else "no complete trial yet")
        return (f"done {done}/{self.total}, running {len(self.running)}, "
                f"pruned {self.counts['PRUNED']}, failed {self.counts['FAIL']} | {best}")


def summary_table(study: optuna.Study, spec: SweepSpec, top_k: int = 5) -> str:
    """State counts, the top-k COMPLETE trials with their parameters, and failure reasons."""
    return trials_summary(study, spec.metric, spec.mode, list(spec.space.names), top_k)


def trials_summary(study: optuna.Study, metric: str, mode: str, names: list[str], top_k: int = 5) -> str:
    """:func:`summary_table` for a study read without its spec (``launch.py status URL``)."""
    counts = state_counts(study)
    lines = ["trials: " + ", ".join(f"{state} {counts.get(state, 0)}"
                                    for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
                                    if counts.get(state) or state in ("COMPLETE", "PRUNED", "FAIL"))]
    ranked = ranked_trials(study, mode)[:top_k]
    if ranked:
        header = ["rank", "trial", metric, "epoch", *names]
        rows = [[str(rank), str(t.number), f"{t.value:.4f}", str(t.user_attrs.get("best_epoch", "")),
                 *[_format_value(t.params.get(n, "-")) for n in names]]
                for rank, t in enumerate(ranked, start=1)]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    reasons: dict[str, int] = {}
    for frozen in study.get_trials(deepcopy=False):
        reason = frozen.user_attrs.get("fail_reason")
        if frozen.state.name == "FAIL" and reason:
            reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        lines.append("failures:")
        lines += [f"  {count} x {reason}" for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)
