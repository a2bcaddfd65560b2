"""The trial ledger: hands trials out of the study, records what they report, and tells the
study how each one ended. Plain Python over an Optuna study, no Ray: the Ray Tune searcher
(:class:`finesweep.search.ray_backend.StudySearcher`) only forwards Ray's calls here, and tests
drive the ledger with scripted results (pruned, NaN, failed, resumed, moved to another node)
in milliseconds.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finesweep.models.run import MetricNotLoggedError
from finesweep.search.study import set_user_attrs, tell, trial_outcome
from finesweep.search.trial import failure_reason

if TYPE_CHECKING:
    import optuna
    from finesweep.search.progress import SweepMonitor
    from finesweep.search.spec import SweepSpec

# Failures that every trial of the sweep would repeat: the first one stops the sweep.
SWEEP_ENDING_ERRORS = (f"{MetricNotLoggedError.__module__}.{MetricNotLoggedError.__qualname__}",
                       MetricNotLoggedError.__qualname__)
# What hand_out returns when no trial will be handed out any more (Ray Tune's Searcher.FINISHED).
FINISHED = "FINISHED"


class TrialLedger:
    """The study's side of a sweep: which trial runs under which runner id, with what config."""

    def __init__(self, study: optuna.Study, spec: SweepSpec, seed_base: int, run_dir: Path,
                 monitor: SweepMonitor | None = None,
                 rerun: Sequence[optuna.trial.FrozenTrial] = (), stop: threading.Event | None = None) -> None:
        self.study = study
        self.spec = spec
        self.seed_base = seed_base
        self.run_dir = run_dir
        self.monitor = monitor
        self._live: dict[str, optuna.Trial] = {}
        # Set when a trial shows that every trial would fail the same way (the metric is never
        # logged): no new trials are handed out and the sweep stops.
        self.abort_reason: str | None = None
        self._last: dict[str, dict[str, Any]] = {}
        self._rerun = list(rerun)
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
        import optuna

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
            self.monitor.trial_started(frozen.number, frozen.params)
        return {"number": frozen.number, "seed": frozen.user_attrs["seed"],
                "config": dict(frozen.user_attrs["config"])}

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
            self.monitor.trial_started(trial.number, sampled)
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
            if "first_step_at" in result:
                # Benchmark timings (search.trial.TIMING_ENV): benchmarks/overhead.py measures the
                # gap between one trial's end and the next one's first step on the same worker.
                where.update(worker_pid=result.get("pid"), first_step_at=result["first_step_at"])
            set_user_attrs(trial, where)
        self._last[runner_id] = result
        value = result.get(self.spec.metric)
        if value is not None and "epoch" in result:
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
        last = self._last.pop(runner_id, None)
        if self.stop.is_set() and int((last or {}).get("epoch", 0)) < self.spec.budget.max_epochs:
            # Stopped by the interrupt, not by its scheduler: left RUNNING in the study, so a
            # resume runs it again with the same parameters and seed, as after a crash. An error
            # now counts too: a terminal's Ctrl-C also reaches Ray's processes (same process
            # group), which may take the trial's worker down first.
            return
        reason = (failure_reason(self.run_dir, trial.number) or runner_error()) if error else None
        if reason and reason.startswith(SWEEP_ENDING_ERRORS):
            self.abort_reason = reason
        outcome = trial_outcome(last, error, self.spec.budget.max_epochs, reason)
        epochs = int((last or {}).get("epoch", 0))
        ending: dict[str, Any] = {"epochs": epochs}
        if last and "reported_at" in last:
            ending["ended_at"] = last["reported_at"]  # A benchmark timing, as first_step_at.
        if last and "best_epoch" in last:
            ending["best_epoch"] = int(last["best_epoch"])
        if last and last.get("resumed_from_epoch"):
            # Retried after a failure, it went on from that epoch's training state.
            ending["resumed_from_epoch"] = int(last["resumed_from_epoch"])
        set_user_attrs(trial, ending)
        tell(self.study, trial, outcome)
        if self.monitor is not None:
            self.monitor.trial_ended(trial.number, trial.params, outcome, epochs)
