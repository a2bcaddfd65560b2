"""Ray Tune execution: the only module that imports Ray.

Ray schedules and places trials (and stops them early through its scheduler); the Optuna
study decides what to try and records what happened. :class:`StudySearcher` forwards Ray's
calls to the Ray-free :class:`~finesweep.search.ledger.TrialLedger`, which asks the study for a
trial, samples the space define-by-run (so conditional parameters work), and tells the study
each trial's outcome, PRUNED included.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Ray's own per-trial CSV/JSON/TensorBoard loggers duplicate what finesweep writes itself
# and cost time on every result; these must be set before Ray Tune is imported.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")
# finesweep handles SIGINT itself (search/signals.py): Tune's handler would end the run
# with every running trial counted as ended.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")

import ray  # noqa: E402
from finesweep.search.cluster import accelerator_for, is_loopback  # noqa: E402
from finesweep.search.ledger import FINISHED, TrialLedger  # noqa: E402
from finesweep.search.run_dir import TUNE_EXPERIMENT, ray_error_path, ray_storage, ray_trial_name, tune_dir  # noqa: E402
from finesweep.search.trial import SweepContext, TrialRequest, run_trial, timing_requested  # noqa: E402
from finesweep.search.user_code import import_roots  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

if TYPE_CHECKING:
    import optuna
    from finesweep.search.progress import SweepMonitor
    from finesweep.search.spec import SweepSpec


class ResourceError(RuntimeError):
    """The cluster cannot ever run one trial with the resources the spec asks for."""


class ClusterError(RuntimeError):
    """The cluster at the given address cannot be joined (its token was refused)."""


def start_ray(address: str | None, *, verbose: bool = False, spec_dir: str | None = None,
              class_paths: Sequence[str] = ()) -> bool:
    """Start a local Ray on loopback only, or join the cluster at ``address``; True when
    this call started a local Ray of its own.

    On a cluster, the user's modules behind ``class_paths`` (found from ``spec_dir``) are
    shipped to every node by Ray's runtime environment; local workers import them from the
    spec's folder (see :class:`~finesweep.search.trial.SweepContext`).
    Reuses a Ray already started in this process (tests share one per session).
    """
    from finesweep.search.user_code import module_files

    if ray.is_initialized():
        return False
    level = logging.INFO if verbose else logging.ERROR
    if not verbose:
        # Tune logs every failed trial's traceback; finesweep records the reason in the study
        # and the traceback in trials/trial_NNNN/error.txt, and prints one line instead.
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    if address is None or is_loopback(address):
        # Ray resolves 127.0.0.1 to the machine's public address and then listens on every
        # interface (or, joining a cluster, connects there); switching off multi-node mode
        # keeps all of its servers and connections on loopback.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    if address is None:
        _private_token_for_local_ray()
        # address="local": a new Ray of our own, even where `ray start` left a cluster running
        # (plain ray.init() would silently join that one).
        ray.init(address="local", include_dashboard=False, log_to_driver=verbose, logging_level=level,
                 configure_logging=True, _node_ip_address="127.0.0.1")
        return True
    shipped = module_files(class_paths, spec_dir) if spec_dir is not None else []
    try:
        ray.init(address=address, log_to_driver=verbose, logging_level=level, configure_logging=True,
                 runtime_env={"py_modules": shipped} if shipped else None)
    except (ray.exceptions.AuthenticationError, ConnectionError) as error:
        if _refused_for_auth(error):
            raise ClusterError(f"the Ray cluster at {address} refused this driver's token (give every node "
                               "and the driver the cluster's token: RAY_AUTH_MODE=token with ~/.ray/auth_token "
                               "or RAY_AUTH_TOKEN)") from None
        raise ClusterError(f"cannot join the Ray cluster at {address}: {str(error).splitlines()[0]}") from None
    return False


def _refused_for_auth(error: BaseException | None) -> bool:
    """Whether a failed ray.init was the cluster refusing the token: Ray raises a plain
    ConnectionError whose causes say so, in words that vary with where the check failed."""
    while error is not None:
        text = str(error).lower()
        if isinstance(error, ray.exceptions.AuthenticationError) or "authenticat" in text or "auth_token" in text:
            return True
        error = error.__cause__ or error.__context__
    return False


def _private_token_for_local_ray() -> None:
    """Token authentication for a local Ray without touching ~/.ray/auth_token.

    Ray 2.60 turns token authentication on for every new local cluster and, with no token
    anywhere, writes one to ~/.ray/auth_token. Any later `ray start --head` on the machine
    then finds that file and requires the token, while `ray start --address` on a worker
    does not pick it up: the cluster commands fail with InvalidAuthToken. A fresh token in
    this process's environment (inherited by the Ray processes it starts, and only by them)
    keeps the local Ray authenticated and leaves the file alone. An explicit RAY_AUTH_MODE
    (token or disabled) is the user's choice and is kept, token source included.
    """
    import secrets

    if "RAY_AUTH_MODE" in os.environ:
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    _reload_auth_settings()


def _reload_auth_settings() -> None:
    """Ray caches the auth mode and token per process; make it read the environment again
    (tests start clusters with different settings in one process)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def local_session() -> tuple[str, list[int]]:
    """The session folder and node processes (GCS, raylet, agents, ...) of the Ray this
    process started; empty when it joined a cluster."""
    node = getattr(ray._private.worker, "_global_node", None)
    if node is None or not node.head:
        return "", []
    pids = [info.process.pid for infos in node.all_processes.values() for info in infos
            if info.process is not None]
    return node.get_session_dir_path(), pids


def check_resources(cpus: float, gpus: float) -> None:
    """Fail before any trial when no node could ever hold one trial (else Ray waits forever)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    fits = [n for n in nodes
            if n["Resources"].get("CPU", 0) >= cpus and n["Resources"].get("GPU", 0) >= gpus]
    if not fits:
        have = ", ".join(f"{n['NodeManagerAddress']}: {n['Resources'].get('CPU', 0):g} CPU, "
                         f"{n['Resources'].get('GPU', 0):g} GPU" for n in nodes)
        raise ResourceError(
            f"no node can run a trial needing {cpus:g} CPU and {gpus:g} GPU (nodes: {have}); "
            "lower `resources.cpus`/`resources.gpus` in the spec or add nodes")


def _accelerator(gpu_ids: Sequence[Any]) -> str:
    if not gpu_ids:
        return accelerator_for(gpu_ids, False)  # Without a GPU, torch need not load (a simulated trial).
    import torch

    return accelerator_for(gpu_ids, torch.cuda.is_available())


def _trainable(config: dict[str, Any], context: SweepContext) -> None:
    runtime = ray.get_runtime_context()
    node = runtime.get_node_id()
    request = TrialRequest(**config)
    gpu_ids = [str(i) for i in ray.get_gpu_ids()]
    accelerator = _accelerator(gpu_ids)
    where = {"node_id": node, "node_ip": ray.util.get_node_ip_address(), "gpu_ids": gpu_ids,
             "accelerator": accelerator}

    def report(metrics: dict[str, Any], state_dir: Path | None) -> None:
        # Ray copies the state into the run's storage before the result reaches the driver;
        # a retry of this trial, on any node, gets the latest copy from tune.get_checkpoint().
        checkpoint = tune.Checkpoint.from_directory(str(state_dir)) if state_dir is not None else None
        tune.report({**metrics, **where}, checkpoint=checkpoint)

    previous = tune.get_checkpoint()
    if previous is None:
        run_trial(context, request, report, accelerator=accelerator)
        return
    with previous.as_directory() as resume_from:
        run_trial(context, request, report, accelerator=accelerator, resume_from=Path(resume_from))


class _StopWhenAborted(tune.Stopper):
    """Ends the running trials once the ledger has seen a sweep-ending failure."""

    def __init__(self, ledger: TrialLedger) -> None:
        self.ledger = ledger

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return self.stop_all()

    def stop_all(self) -> bool:
        # A copy Ray restored from a pickle has no ledger; the driver's own object decides.
        return self.ledger is not None and self.ledger.abort_reason is not None

    def __getstate__(self) -> dict[str, Any]:
        return {"ledger": None}  # Ray pickles the run config; the ledger stays here.


class StudySearcher(Searcher):
    """Ray Tune's searcher over the :class:`~finesweep.search.ledger.TrialLedger`: Ray's calls
    in, the ledger's answers out, and Ray's own account of a failed trial."""

    def __init__(self, ledger: TrialLedger) -> None:
        super().__init__()
        self.ledger = ledger

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        handed = self.ledger.hand_out(trial_id)
        return Searcher.FINISHED if handed == FINISHED else handed

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.ledger.record(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        # Ray hands the final result only here, not to on_trial_result.
        self.ledger.complete(trial_id, result, error, lambda: _ray_error(self.ledger.run_dir, trial_id))

    # The study database holds the searcher's whole state. Ray pickles the Tuner (and so
    # this searcher) for its own restore, which finesweep never uses.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "ledger": None}

    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        pass

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        pass


def _ray_error(run_dir: Path, trial_id: str) -> str | None:
    """Ray's account of a failure the trial could not write itself (its worker, raylet or node
    died). Tune writes it in the driver's staging folder inside Ray's session before telling
    the searcher, and copies it under the run directory only later."""
    candidates = [ray_error_path(run_dir, trial_id)]
    node = getattr(ray._private.worker, "_global_node", None)
    if node is not None:
        candidates += Path(node.get_session_dir_path()).glob(
            f"artifacts/*/*/driver_artifacts/{ray_trial_name(trial_id)}/error.txt")
    path = next((c for c in candidates if c.exists()), None)
    if path is None:
        return None
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()
             if line.strip() and not line.startswith("Failure #")]
    return lines[0][:300] if lines else None


def _scheduler(spec: SweepSpec) -> Any:
    from ray.tune import schedulers

    options: Mapping[str, Any] = spec.scheduler.options
    max_t = spec.budget.max_epochs
    if spec.scheduler.name == "asha":
        return schedulers.ASHAScheduler(time_attr="training_iteration", max_t=max_t,
                                        grace_period=min(int(options.get("grace_period", 1)), max_t),
                                        reduction_factor=options.get("reduction_factor", 3),
                                        brackets=int(options.get("brackets", 1)))
    if spec.scheduler.name == "hyperband":
        return schedulers.HyperBandScheduler(time_attr="training_iteration", max_t=max_t,
                                             reduction_factor=options.get("reduction_factor", 3))
    if spec.scheduler.name == "median":
        return schedulers.MedianStoppingRule(time_attr="training_iteration",
                                             grace_period=options.get("grace_period", 1),
                                             min_samples_required=int(options.get("min_samples_required", 3)))
    return schedulers.FIFOScheduler()


def run_trials(spec: SweepSpec, study: optuna.Study, run_dir: Path, *, trials: int, seed_base: int,
               monitor: SweepMonitor | None, rerun: Sequence[optuna.trial.FrozenTrial] = (),
               verbose: bool = False, stop: threading.Event | None = None,
               tick: Callable[[], None] | None = None, on_cluster: bool = False) -> str | None:
    """Run ``trials`` trials of ``spec`` through Ray Tune, recording each in ``study``; returns
    why the sweep stopped early when a trial showed that every trial would fail, else None.

    Setting ``stop`` (from a signal handler) ends the run: no new trial starts and the
    running ones stay RUNNING in the study for a resume. ``tick`` is called now and then
    from Tune's loop (the driver renews its lease on the study there)."""
    stop = stop or threading.Event()
    if stop.is_set():
        return None
    context = SweepContext(
        metric=spec.metric, mode=spec.mode,
        # Local workers import the user's modules from the spec's folder; on a cluster, Ray's
        # runtime environment has shipped them (start_ray), as no shared folder is assumed.
        import_roots=() if on_cluster else tuple(import_roots(spec.base_dir)),
        max_epochs=spec.budget.max_epochs, run_dir=str(run_dir.resolve()),
        cpus_per_trial=spec.resources.cpus, trial_timeout_s=spec.budget.trial_timeout_s,
        memory_mb=spec.resources.memory_mb,
        # Only a trial Ray may retry needs its state kept; otherwise the copies are pure cost.
        keep_training_state=spec.max_failures > 0, record_timing=timing_requested(),
    )
    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    if spec.resources.memory_mb:
        resources["memory"] = int(spec.resources.memory_mb * 2**20)
    trainable = tune.with_resources(tune.with_parameters(_trainable, context=context), resources)
    ledger = TrialLedger(study, spec, seed_base, run_dir, monitor, rerun, stop)
    searcher = StudySearcher(ledger)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, search_alg=searcher, scheduler=_scheduler(spec),
            num_samples=trials, max_concurrent_trials=spec.resources.concurrency,
            # A reused worker keeps torch, Lightning and the dataset loaded between trials.
            reuse_actors=True, time_budget_s=spec.budget.time_limit_s,
            trial_dirname_creator=lambda trial: ray_trial_name(trial.trial_id),
        ),
        run_config=tune.RunConfig(
            name=TUNE_EXPERIMENT, storage_path=str(ray_storage(run_dir).resolve()), verbose=2 if verbose else 0,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False, num_to_keep=1),
            callbacks=[_Heartbeat(monitor, tick)],
            stop=tune.stopper.CombinedStopper(_StopFlag(stop), _StopWhenAborted(ledger)),
        ),
    )
    try:
        tuner.fit()
    finally:
        remove_empty_trial_dirs(tune_dir(run_dir))
    return ledger.abort_reason


def remove_empty_trial_dirs(tune_dir: Path) -> list[Path]:
    """Remove the ``ray_*`` trial folders Ray Tune left empty; return them.

    Tune makes one per trial, but finesweep switches off its per-trial loggers and keeps the
    trial's outputs under ``trials/`` and ``tensorboard/``, so most stay empty and only clutter
    the run directory. A non-empty one is kept: Ray writes a failed trial's error.txt there
    (read by :func:`_ray_error` when the worker died before writing its own).
    """
    removed = []
    for folder in sorted(tune_dir.glob(ray_trial_name("*"))):
        if folder.is_dir() and not any(folder.iterdir()):
            try:
                folder.rmdir()
            except OSError:
                continue  # written into meanwhile (another driver on the same folder): keep it
            removed.append(folder)
    return removed


class _Heartbeat(tune.Callback):
    """Tune's control loop turns several times a second; let the monitor print a status line
    now and then between trial ends, and call ``tick`` every TICK_S seconds."""

    TICK_S = 30.0

    def __init__(self, monitor: SweepMonitor | None, tick: Callable[[], None] | None = None) -> None:
        self.monitor = monitor
        self.tick = tick
        self._ticked = time.monotonic()

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self.monitor is not None:
            self.monitor.heartbeat()
        if self.tick is not None and time.monotonic() - self._ticked > self.TICK_S:
            self._ticked = time.monotonic()
            self.tick()

    def __getstate__(self) -> dict[str, Any]:
        return {"monitor": None, "tick": None}  # Ray pickles the run config; the console stays here.


class _StopFlag(tune.Stopper):
    """Ends the whole Tune run once the driver's stop flag is set (first Ctrl-C / SIGTERM).

    Tune may copy or pickle its run config; the flag itself stays in this process, looked up
    by key, so every copy here sees it set and a copy elsewhere never stops anything."""

    _flags: dict[str, threading.Event] = {}

    def __init__(self, stop: threading.Event) -> None:
        self.key = f"{os.getpid()}-{id(stop)}"
        self._flags[self.key] = stop

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        flag = self._flags.get(self.key)
        return flag is not None and flag.is_set()


def _retrain(run: Any, job: Any) -> Any:
    return run(job, _accelerator(ray.get_gpu_ids()))


def run_retrains(jobs: Sequence[Any], run: Any, *, cpus: float, gpus: float = 0.0,
                 concurrency: int = 2) -> list[Any]:
    """Run ``run(job, accelerator)`` for every job as a Ray task with a trial's resources,
    at most ``concurrency`` at a time; returns each job's result, or the exception it
    raised, in the order of ``jobs`` (one failing retraining does not stop the others)."""
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_retrain)
    results: list[Any] = [None] * len(jobs)
    pending: dict[Any, int] = {}
    queue = list(enumerate(jobs))
    while queue or pending:
        while queue and len(pending) < max(1, concurrency):
            index, job = queue.pop(0)
            pending[remote.remote(run, job)] = index
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            index = pending.pop(ref)
            try:
                results[index] = ray.get(ref)
            except ray.exceptions.RayTaskError as error:
                results[index] = error.as_instanceof_cause()
            except ray.exceptions.RayError as error:
                results[index] = error
    return results


def start_loopback_cluster(temp_dir: str, head: Mapping[str, Any],
                           workers: Sequence[Mapping[str, Any]] = ()) -> Any:
    """A multi-node Ray cluster on this machine, for tests and benchmarks: each node is its
    own raylet and workers (Ray's own test cluster), every server on 127.0.0.1.

    ``head`` and each of ``workers`` are node arguments (``num_cpus``, ``num_gpus``, ...; a
    GPU declared here is a logical resource). Returns Ray's ``Cluster``: ``address`` to join,
    ``add_node(**args)``, ``remove_node(node, allow_graceful=False)`` kills a node's processes,
    ``shutdown()`` stops them all. ``temp_dir`` keeps its sessions apart from any other Ray
    on the machine (keep it short: Ray puts unix sockets in it).
    """
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # As in start_ray: off, Ray keeps 127.0.0.1 as given instead of swapping in the
    # machine's public address; the node processes inherit the setting.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    _reload_auth_settings()  # The caller may have set RAY_AUTH_MODE / RAY_AUTH_TOKEN for this cluster.
    loopback = {"node_ip_address": "127.0.0.1", "temp_dir": temp_dir}
    cluster = Cluster(initialize_head=True, shutdown_at_exit=True,
                      head_node_args={"include_dashboard": False, **loopback, **head})
    try:
        for worker in workers:
            cluster.add_node(**loopback, **worker)
    except BaseException:
        cluster.shutdown()
        raise
    return cluster
