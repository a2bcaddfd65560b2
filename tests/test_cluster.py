"""Sweeps on a real multi-node Ray cluster: trials spread over the nodes, share a GPU in
fractions, survive a worker node that dies, and a GPU request the cluster cannot meet is
refused up front.

The cluster is Ray's own multi-node test cluster started by the fixture: a head and worker
nodes, each its own raylet and worker processes, all on 127.0.0.1 of this machine. The
sweeps are real ``launch.py sweep --address`` drivers joining it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from finesweep.search.cluster import (
    ClusterError,
    ResourceError,
    accelerator_for,
    check_fits,
    init_arguments,
    is_loopback,
    join_error,
    nodes_line,
    trials_per_node,
)
from finesweep.search.study import state_counts
from finesweep.search.trial import TIMING_ENV

ROOT = Path(__file__).resolve().parents[1]


# ---- placement rules, no Ray -------------------------------------------------------------

@pytest.mark.parametrize(("address", "expected"), [
    ("127.0.0.1:6379", True), ("localhost:6379", True), ("[::1]:6379", True), ("127.0.0.1", True),
    ("10.0.0.5:6379", False), ("head-node:6379", False), ("", False), (None, False)])
def test_loopback_addresses_are_recognised(address, expected):
    assert is_loopback(address) is expected


def test_a_logical_gpu_without_cuda_trains_on_cpu():
    assert accelerator_for(["0"], cuda_available=True) == "gpu"
    assert accelerator_for(["0"], cuda_available=False) == "cpu"
    assert accelerator_for([], cuda_available=True) == "cpu"


def test_trials_are_counted_per_node():
    def trial(node, ip="127.0.0.1"):
        return SimpleNamespace(user_attrs={"node": node, "node_ip": ip} if node else {})

    trials = [trial("aaaaaaaaaa11"), trial("bbbbbbbbbb22"), trial("aaaaaaaaaa11"), trial(None)]
    assert trials_per_node(trials) == {"127.0.0.1 (aaaaaaaa)": 2, "127.0.0.1 (bbbbbbbb)": 1, "unknown node": 1}
    assert nodes_line(trials).startswith("trials per node: 127.0.0.1 (aaaaaaaa): 2, ")


def _node(cpus: float, gpus: float = 0, alive: bool = True, ip: str = "10.0.0.1") -> dict:
    return {"Alive": alive, "NodeManagerAddress": ip, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def test_a_trial_that_no_live_node_can_hold_is_refused_naming_the_nodes():
    check_fits([_node(4), _node(2, 1)], cpus=2, gpus=1)
    with pytest.raises(ResourceError, match=r"needing 2 CPU and 1 GPU \(nodes: 10.0.0.1: 4 CPU, 0 GPU\)"):
        check_fits([_node(4), _node(8, 2, alive=False)], cpus=2, gpus=1)


class AuthError(Exception):
    """Stands in for Ray's AuthenticationError."""


def test_a_refused_token_is_told_apart_from_other_join_failures():
    assert "refused this driver's token" in str(join_error("h:6379", AuthError("no"), AuthError))
    wrapped = ConnectionError("GCS unreachable")
    wrapped.__cause__ = RuntimeError("Authentication failed: invalid token")
    assert "refused this driver's token" in str(join_error("h:6379", wrapped, AuthError))
    error = join_error("h:6379", ConnectionError("timed out\nat line 2"), AuthError)
    assert isinstance(error, ClusterError) and str(error) == "cannot join the Ray cluster at h:6379: timed out"


def test_a_local_ray_is_a_new_one_on_loopback_without_dashboard():
    """No private `ray.init` argument: the loopback setting comes from the environment Ray reads
    (cluster.prepare_ray_environment); test_reliability checks what the local Ray listens on."""
    local = init_arguments(None, verbose=False)
    assert local["address"] == "local" and not any(name.startswith("_") for name in local)
    assert local["include_dashboard"] is False and local["log_to_driver"] is False
    joined = init_arguments("h:6379", verbose=True, py_modules=["/src/mymodel.py"])
    assert joined["address"] == "h:6379" and joined["runtime_env"] == {"py_modules": ["/src/mymodel.py"]}
    assert init_arguments("h:6379", verbose=False)["runtime_env"] is None


# ---- a real two-node cluster on loopback --------------------------------------------------

@contextlib.contextmanager
def _token_auth():
    """RAY_AUTH_MODE=token with a token in the environment (never ~/.ray of the machine): the
    nodes started here and the sweep drivers started from here inherit both. A token already
    there (this process's own local Ray) is kept, so that Ray keeps working."""
    added = {key: value for key, value in (("RAY_AUTH_MODE", "token"), ("RAY_AUTH_TOKEN", secrets.token_hex(32)))
             if key not in os.environ}
    os.environ.update(added)
    try:
        yield os.environ["RAY_AUTH_TOKEN"]
    finally:
        for key in added:
            os.environ.pop(key, None)


@pytest.fixture(scope="module")
def cluster():
    """Head (1 CPU) + worker node `gpu_node` (1 CPU, 1 logical GPU), with token authentication
    on; stopped afterwards."""
    from benchmarks.loopback_cluster import start_loopback_cluster

    temp_dir = tempfile.mkdtemp(prefix="fs-ray-", dir="/tmp")  # short: Ray puts sockets in it
    with _token_auth() as token:
        ray_cluster = start_loopback_cluster(
            temp_dir, {"num_cpus": 1}, [{"num_cpus": 1, "num_gpus": 1}])
        try:
            yield SimpleNamespace(ray=ray_cluster, address=ray_cluster.address, head=ray_cluster.head_node,
                                  gpu_node=next(iter(ray_cluster.worker_nodes)), token=token)
        finally:
            ray_cluster.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def _sweep(spec: Path, run_dir: Path, address: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "launch.py", "sweep", str(spec), "--out", str(run_dir),
                             "--address", address], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _finish(process: subprocess.Popen, timeout: float = 240) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, (out + err)[-3000:]
    return out


def _study(run_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")


def _running_on(db: Path, node_id: str) -> set[int]:
    """Numbers of RUNNING trials that reported from ``node_id`` (read-only, plain sqlite3)."""
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
            rows = connection.execute(
                "SELECT t.number FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
                "WHERE t.state = 'RUNNING' AND a.key = 'node' AND a.value_json = ?",
                (f'"{node_id}"',)).fetchall()
    except sqlite3.OperationalError:  # the driver is still creating the tables
        return set()
    return {number for (number,) in rows}


def _listeners(pids: set[int]) -> list[tuple[str, int, str]]:
    import psutil

    return [(c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name())
            for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]


def _is_loopback_ip(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def _check_invariants(study: optuna.Study, requested: int) -> None:
    """The reliability issue's invariants: every requested trial once, each finished, best COMPLETE."""
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) == requested
    counts = state_counts(study)
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) + counts.get("FAIL", 0) == requested, counts
    assert study.best_trial.state == optuna.trial.TrialState.COMPLETE


SPREAD = """
name: spread
task: debug
metric: val_acc
space:
  learning_rate: {type: float, low: 0.01, high: 0.5, log: true}
  epoch_seconds: 0.5
strategy: {name: random, seed: 0}
scheduler: none
budget: {trials: 6, max_epochs: 2}
resources: {cpus: 1, concurrency: 2}
"""


@pytest.mark.slow
def test_a_sweep_runs_trials_on_both_nodes_and_everything_listens_on_loopback(tmp_path, cluster):
    import psutil

    run_dir = tmp_path / "run"
    process = _sweep(_spec(tmp_path, SPREAD), run_dir, cluster.address)
    # Sample while the driver and both nodes are busy: the driver's own servers count too.
    deadline = time.monotonic() + 120
    while not (run_dir / "study.db").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    family = {p.pid for p in psutil.Process().children(recursive=True)}
    listeners = _listeners(family)
    out = _finish(process)
    assert listeners, "the cluster's servers were found among this test's child processes"
    exposed = [entry for entry in listeners if not _is_loopback_ip(entry[0])]
    assert not exposed, f"listening beyond loopback: {exposed}"

    study = _study(run_dir, "spread")
    _check_invariants(study, 6)
    nodes = {t.user_attrs["node"] for t in study.trials}
    assert nodes == {cluster.head.node_id, cluster.gpu_node.node_id}, "trials ran on both nodes"
    assert {t.user_attrs["node_ip"] for t in study.trials} == {"127.0.0.1"}
    assert "trials per node: 127.0.0.1 (" in out


GPU_SHARE = """
name: gpu_share
task: debug
metric: val_acc
space:
  learning_rate: {type: float, low: 0.01, high: 0.5, log: true}
  # Long enough that the two trials overlap even when one worker starts well after the other: a
  # loaded 2-core machine took over 10 s to start the second worker (its Lightning import).
  epoch_seconds: 12.0
strategy: {name: random, seed: 0}
scheduler: none
budget: {trials: 2, max_epochs: 2}
resources: {cpus: 0.5, gpus: 0.5, concurrency: 2}
"""


@pytest.mark.slow
def test_half_a_gpu_each_puts_two_trials_on_one_gpu_at_once(tmp_path, cluster):
    run_dir = tmp_path / "run"
    # The benchmark timings (first step, last report) show whether the two trials overlapped.
    timing = {**os.environ, TIMING_ENV: "1"}
    _finish(_sweep(_spec(tmp_path, GPU_SHARE), run_dir, cluster.address, env=timing))
    study = _study(run_dir, "gpu_share")
    first, second = study.trials
    for trial in (first, second):
        assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
        assert trial.user_attrs["node"] == cluster.gpu_node.node_id, "only that node has a GPU"
        assert trial.user_attrs["gpu_ids"] == ["0"], "Ray handed both the same (only) GPU"
        # The GPU is logical (no CUDA here): the trial falls back to CPU instead of crashing.
        assert trial.user_attrs["accelerator"] == "cpu"
    # Concurrently, not one after the other: each began before the other ended.
    assert first.user_attrs["first_step_at"] < second.user_attrs["ended_at"]
    assert second.user_attrs["first_step_at"] < first.user_attrs["ended_at"]


@pytest.mark.slow
def test_more_gpus_than_any_node_has_is_refused_before_any_trial(tmp_path, cluster):
    run_dir = tmp_path / "run"
    spec = _spec(tmp_path, GPU_SHARE.replace("cpus: 0.5, gpus: 0.5", "cpus: 1, gpus: 2"))
    process = _sweep(spec, run_dir, cluster.address)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, (out + err)[-2000:]
    assert "no node can run a trial needing 1 CPU and 2 GPU" in err
    assert not run_dir.exists()


KILLED = """
name: killed
task: debug
metric: val_acc
space:
  learning_rate: {type: float, low: 0.01, high: 0.5, log: true}
  epoch_seconds: 0.6
strategy: {name: random, seed: 1}
scheduler: none
budget: {trials: 8, max_epochs: 5}
resources: {cpus: 1, concurrency: 3}
max_failures: 1
"""


@pytest.mark.slow
def test_a_worker_node_killed_mid_sweep_has_its_trials_retried_elsewhere(tmp_path, cluster):
    from finesweep.search import ray_backend  # noqa: F401  (Ray's settings for loopback are in place)

    doomed = cluster.ray.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    run_dir = tmp_path / "run"
    process = _sweep(_spec(tmp_path, KILLED), run_dir, cluster.address)
    try:
        deadline = time.monotonic() + 240  # new workers import torch first: slow on a busy machine
        on_doomed: set[int] = set()
        while not on_doomed and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
            on_doomed = _running_on(run_dir / "study.db", doomed.node_id)
        assert on_doomed, "a trial ran on the node before it was killed"
        # It reported its first epoch, and with it the training state its retry starts from;
        # a moment more lets the driver register that state before the node goes.
        time.sleep(0.5)
    finally:
        cluster.ray.remove_node(doomed, allow_graceful=False)
    _finish(process)

    study = _study(run_dir, "killed")
    _check_invariants(study, 8)
    counts = state_counts(study)
    assert counts.get("RUNNING", 0) == 0 and counts.get("WAITING", 0) == 0
    for number in on_doomed:
        trial = study.trials[number]
        # max_failures: 1 ran it again on a surviving node, to the end, from its last
        # reported epoch rather than from the start.
        assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
        assert trial.user_attrs["node"] != doomed.node_id
        assert trial.user_attrs.get("resumed_from_epoch", 0) >= 1, trial.user_attrs
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_a_users_own_module_reaches_every_node_through_rays_runtime_environment(tmp_path, cluster):
    """The user's module sits beside the spec in a folder no node process has on its path (the
    nodes were started from the repository, and cluster trials add no local folder to theirs):
    it imports on both nodes only because the driver ships it with Ray's runtime environment."""
    from test_user_models import BASE, USER_MODULE

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "clustermodel.py").write_text(USER_MODULE)
    spec = folder / "spec.yaml"
    spec.write_text(BASE.replace("usermodel.", "clustermodel.").replace("trials: 4", "trials: 6"))
    run_dir = tmp_path / "run"
    out = _finish(_sweep(spec, run_dir, cluster.address))
    assert "COMPLETE 6, PRUNED 0, FAIL 0" in out, out[-3000:]
    study = _study(run_dir, "tiny")
    assert {t.user_attrs["node"] for t in study.trials} == {cluster.head.node_id, cluster.gpu_node.node_id}


@pytest.mark.slow
def test_a_driver_without_the_clusters_token_is_refused(tmp_path, cluster):
    run_dir = tmp_path / "run"
    wrong = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    process = _sweep(_spec(tmp_path, SPREAD), run_dir, cluster.address, env=wrong)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, (out + err)[-2000:]
    assert f"the Ray cluster at {cluster.address} refused this driver's token" in err
    assert "Traceback" not in err
    assert not run_dir.exists()


# ---- `ray start` on a machine where a local sweep ran ----------------------------------------

def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _stop_ray_started_in(temp_dir: str) -> None:
    """End the `ray start` nodes using ``temp_dir`` and their children (never `ray stop`,
    which would stop every Ray on the machine, other people's included)."""
    import psutil

    roots = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(temp_dir in part for part in process.info["cmdline"] or []):
                roots.append(process)
    family = {p.pid: p for root in roots for p in [root, *root.children(recursive=True)] if p.is_running()}
    for process in family.values():
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(list(family.values()), timeout=10)


@pytest.mark.slow
def test_ray_start_joins_a_head_after_a_local_sweep_on_the_same_machine(tmp_path):
    """Ray 2.60 writes ~/.ray/auth_token on a local ray.init, and a later `ray start --head`
    then wants the token while `ray start --address` does not send it (InvalidAuthToken).
    A local sweep keeps its token to itself, so the README's cluster commands still work."""
    home = tmp_path / "home"
    home.mkdir()
    # A fresh shell on the machine: no token settings, and not the loopback-only switch this
    # test process sets for its own clusters (with it `ray start --address` refuses to run).
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("RAY_AUTH") and key != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env["HOME"] = str(home)
    spec = _spec(tmp_path, SPREAD.replace("trials: 6", "trials: 1").replace("epoch_seconds: 0.5",
                                                                           "epoch_seconds: 0.0"))
    swept = subprocess.run([sys.executable, "launch.py", "sweep", str(spec), "--out", str(tmp_path / "run")],
                           cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert swept.returncode == 0, swept.stderr[-2000:]
    assert not (home / ".ray" / "auth_token").exists()

    ray_cli = str(Path(sys.executable).with_name("ray"))
    temp_dir = tempfile.mkdtemp(prefix="fs-rs-", dir="/tmp")
    # Every port given: other Ray instances on this machine hold Ray's default ones.
    gcs, client, *ports = _free_ports(14)
    node_ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-grpc-port",
                  "--dashboard-agent-listen-port", "--metrics-export-port", "--runtime-env-agent-port"]

    def node(ports: list[int]) -> list[str]:
        return ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats",
                *(f"{flag}={port}" for flag, port in zip(node_ports, ports, strict=True))]

    head = [ray_cli, "start", "--head", f"--port={gcs}", f"--ray-client-server-port={client}",
            "--include-dashboard=false", f"--temp-dir={temp_dir}", *node(ports[:6])]
    worker = [ray_cli, "start", f"--address=127.0.0.1:{gcs}", *node(ports[6:])]
    try:
        started = subprocess.run(head, capture_output=True, text=True, env=env, timeout=180)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        joined = subprocess.run(worker, capture_output=True, text=True, env=env, timeout=180)
        assert joined.returncode == 0, joined.stdout[-2000:] + joined.stderr[-2000:]
        assert "InvalidAuthToken" not in joined.stdout + joined.stderr
    finally:
        _stop_ray_started_in(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_a_trial_whose_node_dies_without_retries_fails_with_rays_reason(tmp_path, cluster):
    doomed = cluster.ray.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    run_dir = tmp_path / "run"
    spec = KILLED.replace("max_failures: 1", "max_failures: 0").replace("trials: 8", "trials: 4")
    process = _sweep(_spec(tmp_path, spec), run_dir, cluster.address)
    try:
        deadline = time.monotonic() + 240
        on_doomed: set[int] = set()
        while not on_doomed and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
            on_doomed = _running_on(run_dir / "study.db", doomed.node_id)
        assert on_doomed, "a trial ran on the node before it was killed"
    finally:
        cluster.ray.remove_node(doomed, allow_graceful=False)
    process.communicate(timeout=240)
    study = _study(run_dir, "killed")
    for number in on_doomed:
        trial = study.trials[number]
        assert trial.state == optuna.trial.TrialState.FAIL
        # Ray's own words (its actor died or became unreachable), not a guess that the trial raised.
        reason = trial.user_attrs["fail_reason"]
        assert reason != "the trial raised an error" and "actor" in reason.lower(), reason


def test_ray_is_prepared_for_loopback_only_where_the_address_is_local(monkeypatch):
    from finesweep.search.cluster import LOOPBACK_ONLY_VAR, prepare_ray_environment

    for name in (LOOPBACK_ONLY_VAR, "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    prepare_ray_environment("10.1.2.3:6379")
    assert LOOPBACK_ONLY_VAR not in os.environ and "RAY_AUTH_MODE" not in os.environ
    prepare_ray_environment("127.0.0.1:6379")
    assert os.environ[LOOPBACK_ONLY_VAR] == "0" and "RAY_AUTH_MODE" not in os.environ
    prepare_ray_environment(None)
    assert os.environ["RAY_AUTH_MODE"] == "token" and len(os.environ["RAY_AUTH_TOKEN"]) == 64
