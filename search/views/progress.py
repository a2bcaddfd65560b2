"""The live view of a sweep and its closing summary: one short line per finished trial."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from finesweep.models.run import Direction
from finesweep.search.run_dir import trial_name
from finesweep.search.study import Outcome, first_value, ranked_trials, state_counts

if TYPE_CHECKING:
    import optuna
    from finesweep.search.spec import SweepSpec
    from finesweep.search.tensorboard_log import HParamsLog


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# A start line shows the trial's parameters up to about this many characters.
PARAMS_WIDTH = 110


def params_text(params: Mapping[str, Any], width: int = PARAMS_WIDTH) -> str:
    """``learning_rate 0.003756, optimizer adam, ...``: the trial's active parameters in space
    order, class paths by their class name, cut at about ``width`` characters."""
    parts = [f"{name} {_short(value)}" for name, value in params.items()]
    text = ""
    for index, part in enumerate(parts):
        candidate = f"{text}, {part}" if text else part
        if len(candidate) > width and text:
            return f"{text}, ... (+{len(parts) - index})"
        text = candidate
    return text


def _short(value: Any) -> str:
    if isinstance(value, str) and "." in value and value.rsplit(".", 1)[-1][:1].isupper():
        return value.rsplit(".", 1)[-1]  # a class path: its class
    return _format_value(value)


class SweepMonitor:
    """Receives trial starts and ends from the backend; prints one line for each and records
    HParams. Counts and the best so far start from the study, so a resumed sweep goes on
    counting where the last one stopped; the clock starts at ``started_at`` (the command's start)."""

    def __init__(self, spec: SweepSpec, total: int, hparams: HParamsLog | None = None,
                 out: TextIO | None = None, already_done: int = 0, *, study: optuna.Study | None = None,
                 started_at: float | None = None) -> None:
        self.spec = spec
        self.total = total
        self.hparams = hparams
        self.out = out or sys.stdout
        self.started_at = started_at if started_at is not None else time.monotonic()
        self.running: set[int] = set()
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        self.best: tuple[float, int] | None = None
        # Trials that finished before this monitor started, beyond those counted by state below.
        self.already_done = already_done
        if study is not None:
            for state, count in state_counts(study).items():
                if state in self.counts:
                    self.counts[state] += count
            ranked = ranked_trials(study, spec.mode)
            if ranked:
                self.best = (first_value(ranked[0]), ranked[0].number)
        self.last_output = time.monotonic()

    def trial_started(self, number: int, params: Mapping[str, Any], *, phase: str | None = None,
                      again: str | None = None) -> None:
        """A trial was handed out; ``phase`` is the strategy's phase for it (`auto`: global or
        local), ``again`` why it runs again (a resumed sweep's interrupted trial)."""
        self.running.add(number)
        if self.hparams is not None:
            # TensorBoard lists the trial from now on, as RUNNING until it ends.
            self.hparams.write_trial_start(trial_name(number), params)
        notes = "; ".join(note for note in (phase and f"{self.spec.strategy.name}: {phase}", again) if note)
        shown = params_text(params) or "no searched parameters"
        self._line(f"trial {number:>3} started{f' ({notes})' if notes else ''}: {shown} | running {len(self.running)}")

    def close_unfinished(self, study: optuna.Study) -> None:
        """Give trials that never reported an end (the sweep stopped around them) their final
        HParams record from the study and their progress line; call after ``fail_unfinished``."""
        for frozen in study.get_trials(deepcopy=False):
            if frozen.number in self.running and frozen.state.is_finished():
                value = first_value(frozen) if frozen.state.name == "COMPLETE" else None
                epochs = int(frozen.user_attrs.get("epochs", 0))
                if self.hparams is not None:
                    self.hparams.write_trial(trial_name(frozen.number), frozen.params, frozen.state.name,
                                             value, epochs, (frozen.values or [])[1:] if value is not None else ())
                self.running.discard(frozen.number)
                if frozen.state.name == "FAIL":  # One line per failed trial, with its reason.
                    self.counts["FAIL"] += 1
                    self.out.write(f"[{self.elapsed():>6}] trial {frozen.number:>3} FAIL     after {epochs:>2} "
                                   f"epochs ({frozen.user_attrs.get('fail_reason')}) | {self.status_line()}\n")
        self.running.clear()
        self.out.flush()

    def trial_ended(self, number: int, params: Mapping[str, Any], outcome: Outcome, epochs: int, *,
                    best_epoch: int | None = None, stopped_early: bool = False) -> None:
        self.running.discard(number)
        self.counts[outcome.state] += 1
        if outcome.state == "COMPLETE" and Direction(self.spec.mode).better(
                outcome.value, self.best[0] if self.best else None):
            self.best = (outcome.value, number)
        if self.hparams is not None:
            self.hparams.write_trial(trial_name(number), params, outcome.state, outcome.value, epochs,
                                     (outcome.values or ())[1:])
        if outcome.value is None:
            detail = outcome.reason
        else:
            detail = f"{self.spec.metric} {outcome.value:.4f}"
            if outcome.values is not None:  # several objectives: each one's value at that epoch
                detail += "".join(f", {o.name} {v:.4g}" for o, v in zip(self.spec.objectives[1:], outcome.values[1:],
                                                                          strict=True))
            if best_epoch is not None and best_epoch != epochs:
                detail += f" at epoch {best_epoch}"
            if stopped_early:
                detail += "; its own callbacks stopped it"
        self._line(f"trial {number:>3} {outcome.state:<8} after {epochs:>2} epochs ({detail}) | {self.status_line()}")

    def _line(self, text: str) -> None:
        self.out.write(f"[{self.elapsed():>6}] {text}\n")
        self.out.flush()
        self.last_output = time.monotonic()

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started_at)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def heartbeat(self, every_s: float = 30.0) -> None:
        """Print the status when nothing else was printed for ``every_s`` seconds, so a sweep
        of long trials still shows it is alive."""
        if time.monotonic() - self.last_output >= every_s:
            self._line(self.status_line())

    def status_line(self) -> str:
        done = self.already_done + sum(self.counts.values())
        best = (f"best {self.spec.metric} {self.best[0]:.4f} (trial {self.best[1]})"
                if self.best else "no complete trial yet")
        return (f"done {done}/{self.total}, running {len(self.running)}, "
                f"pruned {self.counts['PRUNED']}, failed {self.counts['FAIL']} | {best}")


def strategy_text(spec: SweepSpec) -> str:
    """The strategy as the sweep's first line names it; `auto` with its hand-off point."""
    if spec.strategy.name != "auto":
        return spec.strategy.name
    # Imported here: Optuna is slow to import.
    from finesweep.search.strategies import STRATEGIES

    options = {**STRATEGIES["auto"].options, **spec.strategy.options}
    stall = (f" or after {options['stall_after']} without a better one" if options.get("stall_after") else "")
    return (f"auto (global, then local once {options['switch_after']} trials are COMPLETE{stall}; "
            "not while global runs its Gaussian process)")


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
        rows = [[str(rank), str(t.number), f"{first_value(t):.4f}", str(t.user_attrs.get("best_epoch", "")),
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
