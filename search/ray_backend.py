"""Ray Tune execution: the only module that imports Ray, a thin adapter over Ray-free code.

Ray schedules and places trials (and stops them early through its scheduler); the Optuna
study decides what to try and records what happened. :class:`StudySearcher` forwards Ray's
calls to the :class:`~finesweep.search.ledger.TrialLedger`; what a Tune run is sent and when
it stops is decided in :mod:`search.tune_run`, joining a cluster and placement in
:mod:`search.cluster`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from finesweep.models.run import Parallel
from finesweep.search import cluster, tune_run, user_code
from finesweep.search.cluster import placement
from finesweep.search.trial import quiet_training_logs

for _name, _value in tune_run.TUNE_ENVIRONMENT.items():  # Read when Ray Tune is imported: set first.
    os.environ.setdefault(_name, _value)

import ray  # noqa: E402
from finesweep.search.ledger import FINISHED, TrialLedger  # noqa: E402
from finesweep.search.schedulers import scheduler_arguments  # noqa: E402
from finesweep.search.schedulers.mo_asha import SweepRungs  # noqa: E402
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


def stop_ray() -> None:
    """Shut down the Ray this process started (``launch.py train --workers``)."""
    ray.shutdown()


def session_dir() -> str:
    """The session folder of the Ray this process started or joined."""
    context = ray.get_runtime_context()
    return os.path.join(context.get_temp_dir(), context.get_session_name())


def node_ids() -> set[str]:
    """The ids of the Ray nodes alive now."""
    return {node["NodeID"] for node in ray.nodes() if node.get("Alive")}


def check_resources(cpus: float, gpus: float, resources: Any = None) -> None:
    """Raise :class:`~finesweep.search.cluster.ResourceError` when no node could ever hold a trial
    (or, for a multi-worker trial's ``resources``, the nodes together could not hold its workers)."""
    if resources is not None and resources.workers > 1:
        problem = placement.cluster_problem(ray.nodes(), resources)
        if problem is not None:
            raise cluster.ResourceError(problem)
        return
    cluster.check_fits(ray.nodes(), cpus, gpus)


def _trainable(config: dict[str, Any], context: SweepContext) -> None:
    if context.workers > 1:
        _run_on_workers(config, context)
        return
    gpu_ids = [str(i) for i in ray.get_gpu_ids()]
    accelerator = cluster.accelerator_for(gpu_ids)
    where = {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(),
             "gpu_ids": gpu_ids, "accelerator": accelerator}

    def report(metrics: dict[str, Any]) -> None:
        tune.report({**metrics, **where})

    # A retry of this trial (its worker or node died, max_failures) finds the training state its
    # last attempt left in the trial's folder, which every node reaches (--out), and goes on there.
    run_trial(context, TrialRequest(**config), report, accelerator=accelerator)


def _run_on_workers(config: dict[str, Any], context: SweepContext) -> None:
    """One trial as one Ray Train run of ``context.workers`` workers (Train V2: the run is started
    from inside the Tune trial, whose process only waits for it). Each epoch rank 0's report
    reaches Tune through TuneReportCallback, so the scheduler prunes the whole run; ending this
    process (a pruned trial) ends the run it owns. Tune retries a failed run (max_failures), which
    goes on from the training state rank 0 left."""
    # Imported here: Ray is slow to import.
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    trainer = _torch_trainer(_worker_loop, {"request": config, "context": context}, workers=context.workers,
                             cpus=context.cpus_per_trial, gpus=context.gpus_per_worker, placement=context.placement,
                             name=f"train_{trial_id}", storage=tune_run.train_storage(context.run_dir),
                             callbacks=[TuneReportCallback()])
    trainer.fit()


def _torch_trainer(loop: Callable[[dict[str, Any]], None], loop_config: dict[str, Any], *, workers: int,
                   cpus: float, gpus: float, placement: str, name: str, storage: str,
                   callbacks: Sequence[Any] = ()) -> Any:
    # Imported here: Ray is slow to import.
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(
        loop, train_loop_config=loop_config,
        # gloo on CPU workers; NCCL between GPUs.
        torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, use_gpu=gpus > 0, resources_per_worker={"CPU": cpus, "GPU": gpus},
            placement_strategy="SPREAD" if placement == "spread" else "PACK"),
        # Ray Train does not retry by itself: Tune's max_failures retries the trial (or `train` fails).
        run_config=ray.train.RunConfig(name=name, storage_path=storage, callbacks=list(callbacks),
                                       failure_config=ray.train.FailureConfig(max_failures=0)))


def parallel_for_this_worker(strategy: str) -> tuple[Any, dict[str, Any]]:
    """The :class:`~finesweep.models.run.Parallel` of this Ray Train worker (Lightning's Ray
    strategy, cluster environment and prepare_trainer) and where the rank runs, with every
    rank's place (``world_size``, ``ranks``) gathered from all of them."""
    # Imported here: torch, Lightning and Ray are slow to import.
    import torch.distributed
    from ray.train.lightning import RayDDPStrategy, RayFSDPStrategy, RayLightningEnvironment, prepare_trainer

    train_context = ray.train.get_context()
    rank, world_size = train_context.get_world_rank(), train_context.get_world_size()
    gpu_ids = [str(i) for i in ray.get_gpu_ids()]
    mine = {"rank": rank, "node": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address(), "gpu_ids": gpu_ids}
    # Ray Train has set up the process group (gloo or NCCL) before the loop runs.
    ranks: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(ranks, mine)
    lightning_strategy = RayFSDPStrategy() if strategy == "fsdp" else RayDDPStrategy()
    parallel = Parallel(strategy=lightning_strategy, plugins=(RayLightningEnvironment(),), rank=rank,
                        world_size=world_size, prepare=prepare_trainer)
    group = ray.util.get_current_placement_group()
    where = {"node_id": mine["node"], "node_ip": mine["node_ip"], "gpu_ids": gpu_ids,
             "accelerator": cluster.accelerator_for(gpu_ids), "world_size": world_size,
             "ranks": sorted(ranks, key=lambda r: r["rank"]),
             "placement_group": group.id.hex() if group is not None else None}
    return parallel, where


def release_placement_group(group_id: str | None) -> None:
    """Remove a multi-worker trial's placement group (its workers end with it). When Tune stops
    the trial (pruned, or at its last epoch) it ends the trial's process, and with it the Train
    run's controller, abruptly; Ray Train's own clean-up of the workers' placement group asks
    Ray's state API, which needs the dashboard (off in a local Ray): without this the group
    would hold its CPUs until the sweep ends, and the next trial's workers would wait forever."""
    if not group_id:
        return
    # Imported here: Ray is slow to import.
    from ray.util.placement_group import PlacementGroup

    with contextlib.suppress(Exception):  # Already removed (the run ended by itself).
        ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(group_id)))


def _worker_loop(loop_config: dict[str, Any]) -> None:
    # Imported here: Ray is slow to import.
    import ray.train

    context: SweepContext = loop_config["context"]
    parallel, where = parallel_for_this_worker(context.strategy)

    def report(metrics: dict[str, Any]) -> None:
        # Every rank reports (Ray Train waits for all of them); Tune is sent rank 0's.
        ray.train.report({**metrics, **where})

    run_trial(context, TrialRequest(**loop_config["request"]), report, accelerator=where["accelerator"],
              parallel=parallel)


def fit_on_workers(run: Any, *, workers: int, cpus: float, gpus: float = 0.0, strategy: str = "ddp",
                   placement: str = "pack", checkpoint_path: str, storage: str, name: str,
                   import_roots: Sequence[str] = ()) -> tuple[Any, list[Any]]:
    """Train the :class:`~finesweep.models.run.TrainingRun` ``run`` as one Ray Train run of
    ``workers`` workers (``launch.py train --workers``); rank 0 writes the best weights to
    ``checkpoint_path``. The workers import the user's modules from ``import_roots``. Returns
    rank 0's :class:`~finesweep.models.training.FitResult` (without test metrics) and where every
    rank ran."""
    trainer = _torch_trainer(_fit_loop, {"run": run, "checkpoint_path": checkpoint_path, "strategy": strategy,
                                         "threads": max(1, int(cpus)), "import_roots": list(import_roots)},
                             workers=workers, cpus=cpus, gpus=gpus, placement=placement, name=name, storage=storage)

    # Imported here: torch and Lightning are slow to import.
    from finesweep.models.training import FitResult

    trainer.fit()
    # Ray Train V2 keeps reported metrics only with a checkpoint: rank 0 leaves its result in a file.
    told = Path(checkpoint_path).with_name(Path(checkpoint_path).name + ".result")
    try:
        given = json.loads(told.read_text())
    finally:
        told.unlink(missing_ok=True)
    ranks = given.pop("ranks")
    return FitResult(**given), ranks


def _fit_loop(loop_config: dict[str, Any]) -> None:
    # Imported here: torch and Lightning are slow to import.
    from finesweep.models.training import fit

    quiet_training_logs()
    user_code.add_user_folders(loop_config["import_roots"])
    parallel, where = parallel_for_this_worker(loop_config["strategy"])
    result = fit(loop_config["run"], checkpoint_path=Path(loop_config["checkpoint_path"]),
                 accelerator=where["accelerator"], threads=loop_config["threads"], parallel=parallel)
    if parallel.writes:
        fields = {k: v for k, v in dataclasses.asdict(result).items() if k not in ("checkpoint", "test")}
        told = Path(loop_config["checkpoint_path"])
        told.with_name(told.name + ".result").write_text(json.dumps({**fields, "ranks": where["ranks"]}))


class StudySearcher(tune.search.Searcher):
    """Ray Tune's searcher over the :class:`~finesweep.search.ledger.TrialLedger`: Ray's calls
    in, the ledger's answers out, and Ray's own account of a failed trial."""

    def __init__(self, ledger: TrialLedger) -> None:
        super().__init__()
        self.ledger = ledger
        # Trial id -> the placement group of its Ray Train workers (multi-worker trials).
        self.groups: dict[str, str] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        handed = self.ledger.hand_out(trial_id)
        return tune.search.Searcher.FINISHED if handed == FINISHED else handed

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if result.get("placement_group"):
            self.groups[trial_id] = result["placement_group"]
        self.ledger.record(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        # Ray hands the final result only here, not to on_trial_result.
        release_placement_group(self.groups.pop(trial_id, None) or (result or {}).get("placement_group"))
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
    """MO-ASHA (search/schedulers/mo_asha.py) as a Tune scheduler: Ray's own take one metric."""

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
