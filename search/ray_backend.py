"""Ray Tune execution: the only module that imports Ray, a thin adapter over Ray-free code.

Ray schedules and places trials (and stops them early through its scheduler); the Optuna
study decides what to try and records what happened. :class:`StudySearcher` forwards Ray's
calls to the :class:`~finesweep.search.ledger.TrialLedger`; what a Tune run is sent and when
it stops is decided in :mod:`search.tune_run`, joining a cluster and placement in
:mod:`search.cluster`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from finesweep.search import cluster, tune_run, user_code

for _name, _value in tune_run.TUNE_ENVIRONMENT.items():  # Read when Ray Tune is imported: set first.
    os.environ.setdefault(_name, _value)

import ray  # noqa: E402
from finesweep.search.ledger import FINISHED, TrialLedger  # noqa: E402
from finesweep.search.mo_asha import SweepRungs  # noqa: E402
from finesweep.search.schedulers import scheduler_arguments  # noqa: E402
from finesweep.search.trial import SweepContext, TrialRequest, run_trial  # noqa: E402
from ray import tune  # noqa: E402

SCHEDULERS = {"asha": tune.schedulers.ASHAScheduler, "hyperband": tune.schedulers.ASHAScheduler,
              "median": tune.schedulers.MedianStoppingRule, "none": tune.schedulers.FIFOScheduler}


def start_ray(address: str | None, *, verbose: bool = False, py_modules: Sequence[str] = ()) -> bool:
    """Start a local Ray on loopback only, or join the cluster at ``address`` and ship the
    user's module files ``py_modules`` to every node with Ray's runtime environment (local
    workers import them from the spec's folder instead); True when this call started a local
    Ray of its own. Reuses a Ray already started in this process (tests share one per session).
    """
    if ray.is_initialized():
        return False
    tune_run.quiet_tune_logs(verbose)
    try:
        # Ray puts the driver's working directory first on every worker's import path (ahead of
        # the standard library): started from a folder of the user's, a planted `optuna.py` there
        # would run in the workers. The user's folders reach them through SweepContext instead.
        with contextlib.chdir(user_code.neutral_directory()):
            ray.init(**cluster.init_arguments(address, verbose, py_modules))
    except (ray.exceptions.AuthenticationError, ConnectionError) as error:
        if address is None:
            raise
        raise cluster.join_error(address, error, ray.exceptions.AuthenticationError) from None
    node_ip = ray.util.get_node_ip_address()
    if address is None and node_ip != "127.0.0.1":
        ray.shutdown()  # Ray was imported before cluster.prepare_ray_environment could keep it on loopback.
        raise cluster.ClusterError(f"the local Ray would listen on {node_ip}, not 127.0.0.1: Ray was imported "
                                   "before cluster.prepare_ray_environment")
    return address is None


def session_dir() -> str:
    """The session folder of the Ray this process started or joined."""
    context = ray.get_runtime_context()
    return os.path.join(context.get_temp_dir(), context.get_session_name())


def node_ids() -> set[str]:
    """The ids of the Ray nodes alive now."""
    return {node["NodeID"] for node in ray.nodes() if node.get("Alive")}


def check_resources(cpus: float, gpus: float) -> None:
    """Raise :class:`~finesweep.search.cluster.ResourceError` when no node could ever hold a trial."""
    cluster.check_fits(ray.nodes(), cpus, gpus)


def _trainable(config: dict[str, Any], context: SweepContext) -> None:
    gpu_ids = [str(i) for i in ray.get_gpu_ids()]
    accelerator = cluster.accelerator_for(gpu_ids)
    where = {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(),
             "gpu_ids": gpu_ids, "accelerator": accelerator}

    def report(metrics: dict[str, Any]) -> None:
        tune.report({**metrics, **where})

    # A retry of this trial (its worker or node died, max_failures) finds the training state its
    # last attempt left in the trial's folder, which every node reaches (--out), and goes on there.
    run_trial(context, TrialRequest(**config), report, accelerator=accelerator)


class StudySearcher(tune.search.Searcher):
    """Ray Tune's searcher over the :class:`~finesweep.search.ledger.TrialLedger`: Ray's calls
    in, the ledger's answers out, and Ray's own account of a failed trial."""

    def __init__(self, ledger: TrialLedger) -> None:
        super().__init__()
        self.ledger = ledger

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        handed = self.ledger.hand_out(trial_id)
        return tune.search.Searcher.FINISHED if handed == FINISHED else handed

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.ledger.record(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        # Ray hands the final result only here, not to on_trial_result.
        self.ledger.complete(trial_id, result, error,
                             lambda: tune_run.ray_failure_reason(self.ledger.run_dir, trial_id, session_dir()))

    # The study database holds the searcher's whole state. Ray pickles the Tuner (and so
    # this searcher) for its own restore, which finesweep never uses.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "ledger": None}

    def save(self, checkpoint_path: str) -> None:
        pass


class _Control(tune_run.RunControl, tune.Stopper, tune.Callback):
    """The :class:`~finesweep.search.tune_run.RunControl` in Tune's two shapes: the stopper that
    ends the whole run (never a single trial) and the callback on every turn of its loop."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.should_stop()

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self.step()


class _MultiObjectiveScheduler(tune.schedulers.FIFOScheduler):
    """MO-ASHA (search/mo_asha.py) as a Tune scheduler: Ray's own take one metric."""

    def __init__(self, rungs: SweepRungs) -> None:
        super().__init__()
        self._rungs = rungs

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        return self.CONTINUE if self._rungs.goes_on(trial.trial_id, result) else self.STOP


def run_trials(ledger: TrialLedger, *, trials: int, verbose: bool = False,
               tick: Callable[[], None] | None = None, on_cluster: bool = False) -> str | None:
    """Run ``trials`` trials of the ledger's sweep through Ray Tune; returns why the sweep stopped
    early when a trial showed that every trial would fail, else None.

    Setting the ledger's ``stop`` (from a signal handler) ends the run: no new trial starts and
    the running ones stay RUNNING in the study for a resume. ``tick`` is called now and then
    from Tune's loop (the driver renews its lease on the study there)."""
    spec, run_dir = ledger.spec, ledger.run_dir
    if ledger.stop.is_set():
        return None
    context = tune_run.sweep_context(spec, run_dir, on_cluster)
    control = _Control(ledger.stop, ledger, ledger.monitor, tick)
    if spec.several_objectives and spec.scheduler.name in ("asha", "hyperband"):
        scheduler: Any = _MultiObjectiveScheduler(SweepRungs(spec))
    else:
        scheduler = SCHEDULERS[spec.scheduler.name](
            **scheduler_arguments(spec.scheduler.name, spec.scheduler.options, spec.budget.max_epochs))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_trainable, context=context), tune_run.trial_resources(spec)),
        tune_config=tune.TuneConfig(search_alg=StudySearcher(ledger), scheduler=scheduler,
                                    **tune_run.tune_settings(spec, trials)),
        run_config=tune.RunConfig(failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                  checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
                                  callbacks=[control], stop=control, **tune_run.storage_settings(run_dir, verbose)),
    )
    with tune_run.hidden_raylet_errors(verbose):
        tuner.fit()
    return ledger.abort_reason


def _retrain(run: Any, job: Any) -> Any:
    return run(job, cluster.accelerator_for(ray.get_gpu_ids()))


def run_retrains(jobs: Sequence[Any], run: Any, *, cpus: float, gpus: float = 0.0,
                 concurrency: int = 2) -> list[Any]:
    """Run ``run(job, accelerator)`` for every job as a Ray task with a trial's resources,
    at most ``concurrency`` at a time; returns each job's result, or the exception it
    raised, in the order of ``jobs`` (one failing retraining does not stop the others)."""
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_retrain)
    limit = max(1, concurrency)
    refs: list[Any] = []
    for index, job in enumerate(jobs):
        if index >= limit:  # Wait until at most limit - 1 of those started so far still run.
            ray.wait(refs, num_returns=index - limit + 1)
        refs.append(remote.remote(run, job))
    return [_outcome(ref) for ref in refs]


def _outcome(ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        return error.as_instanceof_cause()
    except ray.exceptions.RayError as error:
        return error
