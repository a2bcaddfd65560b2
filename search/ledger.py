"""The trial ledger: hands trials out of the study, records what they report, and tells the
study how each one ended. Plain Python over an Optuna study, no Ray: the Ray Tune searcher
(:class:`finesweep.search.ray_backend.StudySearcher`) only forwards Ray's calls here, and tests
drive the ledger with scripted results (pruned, NaN, failed, resumed, moved to another node)
in milliseconds.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finesweep.models.run import MetricNotLoggedError, NonFiniteMetricError
from finesweep.search.objectives import best_values, with_objectives
from finesweep.search.study import set_user_attrs, tell, trial_outcome
from finesweep.search.trial import discard_training_state, failure_reason

if TYPE_CHECKING:
    import optuna
    from finesweep.search.spec import SweepSpec
    from finesweep.search.views.progress import SweepMonitor

# Failures that every trial of the sweep would repeat: the first one stops the sweep.
SWEEP_ENDING_ERRORS = (f"{MetricNotLoggedError.__module__}.{MetricNotLoggedError.__qualname__}",
                       MetricNotLoggedError.__qualname__)
# Failures that say something about the trial's values, not about the sweep (a learning rate
# too high for the loss to stay finite): never a reason to stop the sweep, however many in a row.
VALUE_FAILURES = (f"{NonFiniteMetricError.__module__}.{NonFiniteMetricError.__qualname__}",
                  NonFiniteMetricError.__qualname__, "non-finite metric")
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:~|\.{1,2})?(?:[/\\][\w.@+-]+)+[/\\]?")
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)")


def failure_key(reason: str) -> str:
    """A failure's reason with what differs between trials failing the same way masked: file
    paths (a trial's folder), numbers (epochs, sizes, values, addresses)."""
    return _NUMBER.sub("#", _PATH.sub("<path>", reason.strip()))
# What hand_out returns when no trial will be handed out any more (Ray Tune's Searcher.FINISHED).
FINISHED = "FINISHED"


class TrialLedger:
    """The study's side of a sweep: which trial runs under which runner id, with what config."""

    def __init__(self, study: optuna.Study, spec: SweepSpec, seed_base: int, run_dir: Path,
                 monitor: SweepMonitor | None = None,
                 rerun: Sequence[optuna.trial.FrozenTrial] = (), stop: threading.Event | None = None,
                 going_on: Collection[int] = ()) -> None:
        self.study = study
        self.spec = spec
        self.seed_base = seed_base
        self.run_dir = run_dir
        self.monitor = monitor
        self._live: dict[str, optuna.Trial] = {}
        # Set when trials show that every trial would fail the same way (the metric is never
        # logged; budget.stop_after_failures trials in a row failed with the same error): no new
        # trials are handed out, the running ones stay resumable and the sweep stops.
        self.abort_reason: str | None = None
        # The last trials' common failure (its failure_key) and how many ended with it in a row.
        self._streak: tuple[str, int] | None = None
        self._last: dict[str, dict[str, Any]] = {}
        self._rerun = list(rerun)
        # Interrupted trials that left their training state: their re-run goes on from there.
        self.going_on = set(going_on)
        self.stop = stop or threading.Event()

    def hand_out(self, runner_id: str) -> dict[str, Any] | str | None:
        """The next trial's request (number, seed, config) for ``runner_id``; None while
        stopping (no new trial); :data:`FINISHED` once the sweep must end."""
        if self.stop.is_set():
            return None
        if self.abort_reason is not None:
            return FINISHED
        if self._rerun:
            return self._resumed(runner_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask()
        return self._hand_out(runner_id, trial)

    def _resumed(self, runner_id: str) -> dict[str, Any]:
        """Hand out a trial that an earlier driver left RUNNING, as it was."""
        import optuna  # Only here: the ledger works on the study it is given and imports without Optuna.

        frozen = self._rerun.pop(0)
        if "seed" not in frozen.user_attrs or "config" not in frozen.user_attrs:
            # The driver died between asking for the trial and handing it out: finish
            # drawing it (parameters already drawn keep their values) and hand it out now.
            self.study.sampler.before_trial(self.study, frozen)
            return self._hand_out(runner_id, optuna.trial.Trial(self.study, frozen._trial_id))
        # Same record, same parameters and seed: the trial is re-run, not duplicated.
        trial = optuna.trial.Trial(self.study, frozen._trial_id)
        set_user_attrs(trial, {"ray_trial_id": runner_id, "attempts": int(frozen.user_attrs.get("attempts", 1)) + 1})
        self._live[runner_id] = trial
        if self.monitor is not None:
            again = ("interrupted, goes on after its last finished epoch" if frozen.number in self.going_on
                     else "interrupted, runs again from its start")
            self.monitor.trial_started(frozen.number, frozen.params, phase=_phase(frozen.system_attrs), again=again)
        return {"number": frozen.number, "seed": frozen.user_attrs["seed"], "config": dict(frozen.user_attrs["config"]),
                "reported_epochs": max(frozen.intermediate_values, default=0)}

    def _hand_out(self, runner_id: str, trial: optuna.Trial) -> dict[str, Any]:
        """Draw the trial's parameters, record its config and seed, and hand it out."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampled = self.spec.space.sample(trial)
        config = self.spec.training_config(sampled)
        seed = self.seed_base + trial.number
        set_user_attrs(trial, {"seed": seed, "config": config, "ray_trial_id": runner_id})
        self._live[runner_id] = trial
        if self.monitor is not None:
            self.monitor.trial_started(trial.number, sampled,
                                       phase=_phase(trial.storage.get_trial_system_attrs(trial._trial_id)))
        return {"number": trial.number, "seed": seed, "config": config}

    def record(self, runner_id: str, result: dict[str, Any]) -> None:
        """One epoch's report of a live trial."""
        trial = self._live.get(runner_id)
        if trial is not None:
            self._record(runner_id, trial, result)

    def _record(self, runner_id: str, trial: optuna.Trial, result: dict[str, Any]) -> None:
        if runner_id not in self._last or self._last[runner_id].get("node_id") != result.get("node_id"):
            # The node it (last) ran on: a trial retried after its node died moves elsewhere.
            where = {"node": result.get("node_id"), "node_ip": result.get("node_ip"),
                     "gpu_ids": result.get("gpu_ids"), "accelerator": result.get("accelerator")}
            # Every process the trial trained in: one for a one-worker trial, each Ray Train rank otherwise.
            ranks = result.get("ranks") or [{"rank": 0, "node": where["node"], "node_ip": where["node_ip"],
                                              "gpu_ids": where["gpu_ids"]}]
            where.update(world_size=int(result.get("world_size") or len(ranks)), ranks=list(ranks))
            set_user_attrs(trial, where)
        self._last[runner_id] = result
        value = result.get(self.spec.metric)
        # Optuna keeps no intermediate values for several objectives (Trial.report refuses);
        # MO-ASHA reads each epoch's objectives from Ray's reports instead.
        if value is not None and "epoch" in result and not self.spec.several_objectives:
            with warnings.catch_warnings():
                # A re-run interrupted trial reports its first epochs again; the first value stays.
                warnings.simplefilter("ignore", UserWarning)
                trial.report(float(value), step=int(result["epoch"]))

    def complete(self, runner_id: str, result: dict[str, Any] | None = None, error: bool = False,
                 runner_error: Callable[[], str | None] = lambda: None) -> None:
        """The trial under ``runner_id`` ended: with its final ``result`` (the runner may hand
        the last epoch only here), or with ``error``. ``runner_error`` gives the runner's own
        account of a failure the trial could not write itself (its worker or node died)."""
        trial = self._live.pop(runner_id, None)
        if trial is None:
            return
        seen = self._last.get(runner_id, {}).get("epoch")
        if result and "epoch" in result and result["epoch"] != seen:
            self._record(runner_id, trial, result)
        last = self._last.pop(runner_id, None) or {}
        epochs = int(last.get("epoch", 0))
        if (self.stop.is_set() or self.abort_reason is not None) and epochs < self.spec.budget.max_epochs \
                and not last.get("stopped_early"):
            # Stopped by the interrupt (or the sweep stopping on a repeated failure), not by its
            # scheduler: left RUNNING in the study, so a resume runs it again with the same
            # parameters and seed, from its last epoch, as after a crash. An error now counts too:
            # a terminal's Ctrl-C also reaches Ray's processes (same process group), which may
            # take the trial's worker down first.
            return
        reason = (failure_reason(self.run_dir, trial.number) or runner_error()) if error else None
        outcome = trial_outcome(last or None, error, self.spec.budget.max_epochs, reason)
        outcome, constraints = with_objectives(outcome, last, self.spec)
        ending: dict[str, Any] = {"epochs": epochs}
        if self.spec.multi and outcome.state != "FAIL":
            # The objectives' and constrained values at the best epoch, for the views' front.
            ending["watched"] = best_values(last)
        if "best_epoch" in last:
            ending["best_epoch"] = int(last["best_epoch"])
        if last.get("stopped_early") and outcome.state == "COMPLETE":
            ending["stopped_early"] = True  # by its own callbacks (EarlyStopping), not the scheduler
        if last.get("resumed_from_epoch"):
            # Retried or resumed, it went on from that epoch's training state.
            ending["resumed_from_epoch"] = int(last["resumed_from_epoch"])
        set_user_attrs(trial, ending)
        for key, value in (constraints or {}).items():
            trial.set_constraint(key, value)  # Optuna's own record, which TPE and NSGA-II read
        tell(self.study, trial, outcome)
        discard_training_state(self.run_dir, trial.number)
        self._count_failure(outcome.reason if outcome.state == "FAIL" else None)
        if self.monitor is not None:
            self.monitor.trial_ended(trial.number, trial.params, outcome, epochs, best_epoch=ending.get("best_epoch"),
                                     stopped_early=bool(ending.get("stopped_early")))

    def _count_failure(self, reason: str | None) -> None:
        """Stop the sweep on a failure every trial would repeat: a metric never logged at once,
        any other after ``budget.stop_after_failures`` trials in a row failed the same way."""
        if reason is None or reason.startswith(VALUE_FAILURES):
            self._streak = None
            return
        key = failure_key(reason)
        count = self._streak[1] + 1 if self._streak is not None and self._streak[0] == key else 1
        self._streak = (key, count)
        limit = self.spec.budget.stop_after_failures
        if reason.startswith(SWEEP_ENDING_ERRORS):
            self.abort_reason = reason
        elif limit and count >= limit:
            self.abort_reason = (f"{count} trials in a row failed with the same error "
                                 f"(budget.stop_after_failures: {limit}): {reason}")


def _phase(system_attrs: dict[str, Any]) -> str | None:
    """What the strategy did for the trial, where it says: `auto`'s phase, `global`'s GP."""
    from finesweep.search.strategies import ENGINE_ATTR, PHASE_ATTR  # Optuna, numpy, jsonargparse: not at the top.

    phase = system_attrs.get(PHASE_ATTR)
    if system_attrs.get(ENGINE_ATTR) == "gp":
        return f"{phase or 'global'}, Gaussian process"
    return phase
