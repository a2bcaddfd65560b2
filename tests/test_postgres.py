"""Studies in a real PostgreSQL server: two sweeps share it, `export` and `dashboard` read it.

The fixture starts its own server (tests/postgres_server.py, from Debian's `postgresql`
package, which scripts/install_services.sh installs): a fresh cluster in a temporary folder,
listening on 127.0.0.1 only at a free port, stopped afterwards.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from finesweep.search.run_dir.files import read_record
from finesweep.search.spec import parse_spec
from finesweep.search.sweep import run_sweep
from postgres_server import free_port, private_postgres

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


@pytest.fixture(scope="module")
def postgres():
    """URL of a database `finesweep` on a private PostgreSQL server on 127.0.0.1."""
    with private_postgres() as server:
        yield server


SPEC = """
name: {name}
task: debug
metric: val_acc
space:
  learning_rate: {{type: float, low: 0.01, high: 0.5, log: true}}
  hidden_units: {{type: int, low: 4, high: 32}}
strategy: {{name: random, seed: {seed}}}
scheduler: none
budget: {{trials: 2, max_epochs: 2}}
resources: {{cpus: 1, concurrency: 2}}
"""


def test_two_sweeps_share_one_postgres_server_and_export_and_dashboard_read_it(tmp_path, postgres, local_ray):
    import psutil

    url = postgres["url"]
    runs = {}
    for seed, name in enumerate(("pg_first", "pg_second")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(SPEC.format(name=name, seed=seed))
        runs[name] = run_sweep(parse_spec(path, {("storage",): url}), tmp_path / name)
        assert runs[name].storage == url
        assert not (tmp_path / name / "study.db").exists(), "the study went to PostgreSQL, not SQLite"

    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(url)}
    assert {"pg_first", "pg_second"} <= set(summaries)
    for name in runs:
        assert summaries[name].n_trials == 2

    # `export` finds the study through the run directory's spec.yaml, which names the storage.
    best = tmp_path / "pg_first" / "best.yaml"
    best.unlink()
    done = subprocess.run([sys.executable, "launch.py", "export", str(tmp_path / "pg_first")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    exported = read_record(best)
    study = optuna.load_study(study_name="pg_first", storage=url)
    assert exported["value"] == pytest.approx(study.best_value)
    assert exported["trial"] == study.best_trial.number

    # The live dashboard: on loopback, showing both studies of the shared server.
    port = free_port()
    dashboard = subprocess.Popen([sys.executable, "launch.py", "dashboard", url, "--port", str(port)], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        names = _dashboard_studies(port, dashboard)
        family = {dashboard.pid} | {p.pid for p in psutil.Process(dashboard.pid).children(recursive=True)}
        listening = [c.laddr.ip for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.pid in family]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)
    assert {"pg_first", "pg_second"} <= names
    assert listening and all(_is_loopback(ip) for ip in listening), listening
    server = [c.laddr.ip for c in psutil.net_connections(kind="inet")
              if c.status == psutil.CONN_LISTEN and c.pid == postgres["pid"]]
    assert server and all(_is_loopback(ip) for ip in server), server


def _dashboard_studies(port: int, process: subprocess.Popen, timeout: float = 90) -> set[str]:
    # No proxy from the environment: this request stays on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with opener.open(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                return {s["study_name"] for s in json.load(response)["study_summaries"]}
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"optuna-dashboard did not answer on 127.0.0.1:{port} (exit code {process.poll()})")


def test_a_password_is_never_written_and_a_live_owner_holds_the_study(tmp_path, postgres, local_ray):
    """The server trusts loopback, so any password works: it stands in for a real one here."""
    import stat

    url = postgres["url"].replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@")
    path = tmp_path / "owned.yaml"
    path.write_text(SPEC.format(name="owned", seed=3).replace("hidden_units:", "epoch_seconds: 0.5\n  hidden_units:"))
    first = tmp_path / "first"
    run_sweep(parse_spec(path, {("storage",): url}), first)
    spec_copy = (first / "spec.yaml").read_text()
    assert "s3cret-pw" not in spec_copy and postgres["url"] in spec_copy
    assert stat.S_IMODE((first / "spec.yaml").stat().st_mode) == 0o600
    # A second run directory holding the same study (as the same path on another machine would):
    second = tmp_path / "second"
    second.mkdir()
    (second / "spec.yaml").write_text(spec_copy)
    env = {**os.environ, "FINESWEEP_STORAGE": url}
    live = subprocess.Popen([sys.executable, "launch.py", "resume", str(first), "--trials", "6"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 240
        study = optuna.load_study(study_name="owned", storage=postgres["url"])
        while len(study.get_trials(deepcopy=False)) <= 2 and live.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        refused = subprocess.run([sys.executable, "launch.py", "resume", str(second), "--trials", "6"], cwd=ROOT,
                                 capture_output=True, text=True, env=env, timeout=240)
    finally:
        out, err = live.communicate(timeout=300)
    assert live.returncode == 0, err[-2000:]
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert f"study 'owned' is in use by a running sweep (pid {live.pid} on {socket.gethostname()})" in refused.stderr
    assert "s3cret-pw" not in out + err + refused.stdout + refused.stderr
    assert len(optuna.load_study(study_name="owned", storage=postgres["url"]).trials) == 6
