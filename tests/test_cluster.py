"""Sweeps on a real multi-node Ray cluster: trials spread over the nodes, share a GPU in
fractions, survive a worker node that dies, and a GPU request the cluster cannot meet is
refused up front.

The cluster is Ray's own multi-node test cluster started by the fixture: a head and worker
nodes, each its own raylet and worker processes, all on 127.0.0.1 of this machine. The
sweeps are real ``launch.py sweep --address`` drivers joining it.
"""

from __future__ import annotations

import json
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
import ray_nodes
from finesweep.search.cluster import (
    ClusterError,
    ResourceError,
    accelerator_for,
    check_fits,
    check_reachable,
    init_arguments,
    is_loopback,
    join_error,
    nodes_line,
    split_address,
    trials_per_node,
)
from finesweep.search.study import state_counts

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


# ---- address checks, no Ray ---------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:abc", "127.0.0.1:0", "127.0.0.1:70000", ":6379",
                                     "::1:6379", "http://h:6379"])
def test_an_address_that_is_not_host_port_is_refused(address):
    with pytest.raises(ClusterError, match=r"is not HOST:PORT"):
        split_address(address)


def test_addresses_are_split_into_host_and_port():
    assert split_address("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert split_address("[::1]:6379") == ("::1", 6379)
    assert split_address("head-node:1") == ("head-node", 1)


def test_an_address_where_nothing_listens_is_refused_at_once():
    (port,) = ray_nodes.free_ports(1)
    with pytest.raises(ClusterError, match=rf"^cannot join the Ray cluster at ray://127.0.0.1:{port}: connection"):
        check_reachable(f"ray://127.0.0.1:{port}")  # a Ray Client address, checked as HOST:PORT
    check_reachable("auto")  # Ray's own to find (`ray job submit ... --address auto`)
    with pytest.raises(ClusterError, match=rf"^cannot join the Ray cluster at 127.0.0.1:{port}: connection refused"):
        check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(ClusterError, match=r"unknown host 'no-such-host.invalid'"):
        check_reachable("no-such-host.invalid:6379")


def test_an_address_where_another_kind_of_server_answers_is_refused():
    """Ray itself would retry such an address for many minutes (seen: over 300 s)."""
    import threading

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer_as_http_1() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer_as_http_1, daemon=True)
        thread.start()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(ClusterError, match=r"the server there is not a Ray head"):
            check_reachable(address)
        thread.join(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sweep", "export"])
def test_a_bad_address_is_one_line_and_exit_2_before_anything_starts(tmp_path, command):
    (port,) = ray_nodes.free_ports(1)
    spec = _spec(tmp_path, SPREAD)
    run_dir = tmp_path / "run"
    if command == "sweep":
        arguments = ["sweep", str(spec), "--out", str(run_dir)]
    else:  # A run directory to export from: its spec copy and an empty study are enough to get to Ray.
        run_dir.mkdir()
        shutil.copy(spec, run_dir / "spec.yaml")
        optuna.create_study(study_name="spread", storage=f"sqlite:///{run_dir / 'study.db'}")
        arguments = ["export", str(run_dir), "--reseed", "1"]
    for address, expected in ((f"127.0.0.1:{port}", "connection refused"), ("127.0.0.1", "is not HOST:PORT")):
        done = subprocess.run([sys.executable, "launch.py", *arguments, "--address", address], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and expected in lines[0], done.stderr[-2000:]
    assert command == "export" or not run_dir.exists()


# ---- a cluster of `ray start` nodes on this machine, as the README starts one ---------------------

@pytest.fixture(scope="module")
def cluster():
    """`ray start --head --node-ip-address=127.0.0.1 --port=P` (1 CPU) and a worker `ray start
    --address=127.0.0.1:P` (1 CPU, 1 logical GPU), token authentication as the README sets it
    up; afterwards every process they started (trial workers included) is gone."""
    import psutil

    folder = Path(tempfile.mkdtemp(prefix="fs-rc-", dir="/tmp"))  # short: Ray puts sockets in it
    try:
        with ray_nodes.cluster(folder, head_cpus=1, workers=[{"cpus": 1, "gpus": 1}]) as started:
            try:
                yield SimpleNamespace(ray=started, address=started.address, head=started.head,
                                      gpu_node=started.workers[0], env=started.env)
            finally:
                nodes = [psutil.Process(pid) for node in [started.head, *started.workers] for pid in node.pids
                         if psutil.pid_exists(pid)]
                family = {p for node in nodes for p in [node, *node.children(recursive=True)]}
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"left running after the nodes were stopped: {[p.pid for p in alive]}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def _sweep(spec: Path, run_dir: Path, address: str, env: dict[str, str]) -> subprocess.Popen:
    """`launch.py sweep --address` from a shell set up as the README says (``env``)."""
    return subprocess.Popen([sys.executable, "launch.py", "sweep", str(spec), "--out", str(run_dir),
                             "--address", address], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _finish(process: subprocess.Popen, timeout: float = 240) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, (out + err)[-3000:]
    return out


def _study(run_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}")


def _running_on(db: Path, node_id: str, epochs: int = 1) -> set[int]:
    """Numbers of RUNNING trials that reported ``epochs`` epochs or more from ``node_id``
    (read-only, plain sqlite3). After an epoch's report Tune asks the trial for its training
    state and trains it on only once that has arrived: a second epoch reported means the first
    one's state is the driver's, and a retry elsewhere goes on from it."""
    if not db.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
            rows = connection.execute(
                "SELECT t.number FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
                "JOIN trial_intermediate_values v ON v.trial_id = t.trial_id "
                "WHERE t.state = 'RUNNING' AND a.key = 'node' AND a.value_json = ? "
                "GROUP BY t.number HAVING count(DISTINCT v.step) >= ?",
                (f'"{node_id}"', epochs)).fetchall()
    except sqlite3.OperationalError:  # the driver is still creating the tables
        return set()
    return {number for (number,) in rows}


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
def test_the_readmes_cluster_commands_run_a_sweep_with_trials_on_both_nodes(tmp_path, cluster):
    """`launch.py sweep --address 127.0.0.1:P` joins the head and worker started as the README
    shows (it stopped with "Ray would listen on a public address" when the driver insisted on
    loopback: `ray start` had put the nodes on the machine's network address)."""
    run_dir = tmp_path / "run"
    out = _finish(_sweep(_spec(tmp_path, SPREAD), run_dir, cluster.address, cluster.env))

    study = _study(run_dir, "spread")
    _check_invariants(study, 6)
    nodes = {t.user_attrs["node"] for t in study.trials}
    assert nodes == {cluster.head.node_id, cluster.gpu_node.node_id}, "trials ran on both nodes"
    assert {t.user_attrs["node_ip"] for t in study.trials} == {cluster.head.node_ip}
    assert f"trials per node: {cluster.head.node_ip} (" in out


GPU_SHARE = """
name: gpu_share
task: debug
metric: val_acc
space:
  learning_rate: {type: float, low: 0.01, high: 0.5, log: true}
  # The trials' callback holds each one at its first step until the other has taken its own, so
  # they overlap however long a loaded machine takes to start the second worker.
  epoch_seconds: 0.5
strategy: {name: random, seed: 0}
scheduler: none
budget: {trials: 2, max_epochs: 2}
resources: {cpus: 0.5, gpus: 0.5, concurrency: 2}
trainer:
  callbacks: [{class_path: overlap_probe.Span, init_args: {folder: SPANS}}]
"""

# A user's callback (shipped with the spec's folder, as any user module): when each trial took
# its first training step and when it ended its last epoch, one file per trial. At its first step
# a trial waits (at most 120 s) until the other trial has taken its first step too: two trials
# Ray runs at once both pass at once, while of two run one after the other the first waits out
# the 120 s alone and ends before the second begins, which the test's overlap check then fails.
OVERLAP_PROBE = """
import json, time, uuid
from pathlib import Path

import pytorch_lightning as pl


class Span(pl.Callback):
    def __init__(self, folder: str) -> None:
        self.path, self.span = Path(folder) / f"{uuid.uuid4().hex}.json", {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if "first_step_at" in self.span:
            return
        self.span["first_step_at"] = time.time()
        if trainer.max_epochs > 1:  # not the driver's one-batch dry run
            started = self.path.parent / "started"
            started.mkdir(parents=True, exist_ok=True)
            (started / self.path.name).touch()
            deadline = time.monotonic() + 120
            while len(list(started.iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)

    def on_train_epoch_end(self, trainer, module):
        self.span["ended_at"] = time.time()
        if trainer.max_epochs > 1:  # not the driver's one-batch dry run
            self.path.parent.mkdir(exist_ok=True)
            self.path.write_text(json.dumps(self.span))
"""


@pytest.mark.slow
def test_half_a_gpu_each_puts_two_trials_on_one_gpu_at_once(tmp_path, cluster):
    run_dir = tmp_path / "run"
    (tmp_path / "overlap_probe.py").write_text(OVERLAP_PROBE)
    spans = tmp_path / "spans"
    # The trials' own callback (first step, last epoch's end) shows whether they overlapped.
    _finish(_sweep(_spec(tmp_path, GPU_SHARE.replace("SPANS", str(spans))), run_dir, cluster.address, cluster.env))
    study = _study(run_dir, "gpu_share")
    first, second = study.trials
    for trial in (first, second):
        assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
        assert trial.user_attrs["node"] == cluster.gpu_node.node_id, "only that node has a GPU"
        assert trial.user_attrs["gpu_ids"] == ["0"], "Ray handed both the same (only) GPU"
        # The GPU is logical (no CUDA here): the trial falls back to CPU instead of crashing.
        assert trial.user_attrs["accelerator"] == "cpu"
    # Concurrently, not one after the other: each began before the other ended.
    one, two = (json.loads(path.read_text()) for path in sorted(spans.glob("*.json")))
    assert one["first_step_at"] < two["ended_at"] and two["first_step_at"] < one["ended_at"]


@pytest.mark.slow
def test_more_gpus_than_any_node_has_is_refused_before_any_trial(tmp_path, cluster):
    run_dir = tmp_path / "run"
    # No timing callback: its module is not written beside this spec, and this sweep never trains.
    without_probe = GPU_SHARE[:GPU_SHARE.index("trainer:")]
    spec = _spec(tmp_path, without_probe.replace("cpus: 0.5, gpus: 0.5", "cpus: 1, gpus: 2"))
    process = _sweep(spec, run_dir, cluster.address, cluster.env)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, (out + err)[-2000:]
    assert "no node can run a trial needing 1 CPU and 2 GPU" in err
    assert not run_dir.exists()


# 3 at a time on three 1-CPU nodes (the doomed one added by the test): the first three trials take
# one node each, so one of them runs on the node that is killed; the fourth runs after the kill.
KILLED = """
name: killed
task: debug
metric: val_acc
space:
  learning_rate: {type: float, low: 0.01, high: 0.5, log: true}
  epoch_seconds: 0.6
strategy: {name: random, seed: 1}
scheduler: none
budget: {trials: 4, max_epochs: 5}
resources: {cpus: 1, concurrency: 3}
max_failures: 1
"""


@pytest.mark.slow
def test_a_worker_node_killed_mid_sweep_has_its_trials_retried_elsewhere(tmp_path, cluster):
    doomed = cluster.ray.add_worker(cpus=1)
    run_dir = tmp_path / "run"
    process = _sweep(_spec(tmp_path, KILLED), run_dir, cluster.address, cluster.env)
    try:
        deadline = time.monotonic() + 240  # new workers import torch first: slow on a busy machine
        on_doomed: set[int] = set()
        while not on_doomed and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
            on_doomed = _running_on(run_dir / "study.db", doomed.node_id, epochs=2)
        assert on_doomed, "a trial ran on the node before it was killed"
    finally:
        doomed.kill()
    _finish(process)

    study = _study(run_dir, "killed")
    _check_invariants(study, 4)
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
    out = _finish(_sweep(spec, run_dir, cluster.address, cluster.env))
    assert "COMPLETE 6, PRUNED 0, FAIL 0" in out, out[-3000:]
    study = _study(run_dir, "tiny")
    assert {t.user_attrs["node"] for t in study.trials} == {cluster.head.node_id, cluster.gpu_node.node_id}


@pytest.mark.slow
def test_a_driver_without_the_clusters_token_is_refused(tmp_path, cluster):
    run_dir = tmp_path / "run"
    wrong = {**cluster.env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    process = _sweep(_spec(tmp_path, SPREAD), run_dir, cluster.address, env=wrong)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, (out + err)[-2000:]
    assert f"the Ray cluster at {cluster.address} refused this driver's token" in err
    assert "Traceback" not in err
    assert not run_dir.exists()


# ---- `ray start` on a machine where a local sweep ran ----------------------------------------

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

    folder = Path(tempfile.mkdtemp(prefix="fs-rs-", dir="/tmp"))  # short: Ray puts sockets in it
    try:
        # RayNode raises, with `ray start`'s output, when a node does not start.
        with ray_nodes.cluster(folder, head_cpus=1, workers=[{"cpus": 1}], env=env) as started:
            assert "InvalidAuthToken" not in started.workers[0].log.read_text()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_trial_whose_node_dies_without_retries_fails_with_rays_reason(tmp_path, cluster):
    doomed = cluster.ray.add_worker(cpus=1)
    run_dir = tmp_path / "run"
    spec = KILLED.replace("max_failures: 1", "max_failures: 0")
    process = _sweep(_spec(tmp_path, spec), run_dir, cluster.address, cluster.env)
    try:
        deadline = time.monotonic() + 240
        on_doomed: set[int] = set()
        while not on_doomed and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
            on_doomed = _running_on(run_dir / "study.db", doomed.node_id)
        assert on_doomed, "a trial ran on the node before it was killed"
    finally:
        doomed.kill()
    process.communicate(timeout=240)
    study = _study(run_dir, "killed")
    for number in on_doomed:
        trial = study.trials[number]
        assert trial.state == optuna.trial.TrialState.FAIL
        # Ray's own words (its actor died or became unreachable), not a guess that the trial raised.
        reason = trial.user_attrs["fail_reason"]
        assert reason != "the trial raised an error" and "actor" in reason.lower(), reason


def test_ray_is_prepared_for_loopback_only_where_the_address_is_local(monkeypatch):
    from finesweep.search.cluster import LOOPBACK_ONLY_VAR, NO_PRESTART_VAR, prepare_ray_environment

    for name in (LOOPBACK_ONLY_VAR, "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", NO_PRESTART_VAR):
        monkeypatch.delenv(name, raising=False)
    prepare_ray_environment("10.1.2.3:6379")
    assert LOOPBACK_ONLY_VAR not in os.environ and "RAY_AUTH_MODE" not in os.environ
    prepare_ray_environment("127.0.0.1:6379")
    assert os.environ[LOOPBACK_ONLY_VAR] == "0" and "RAY_AUTH_MODE" not in os.environ
    assert NO_PRESTART_VAR not in os.environ  # a cluster's nodes keep their own settings
    prepare_ray_environment(None)
    assert os.environ["RAY_AUTH_MODE"] == "token" and len(os.environ["RAY_AUTH_TOKEN"]) == 64
    assert os.environ[NO_PRESTART_VAR] == "0"
