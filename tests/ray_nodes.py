"""Ray nodes started with the `ray` CLI, as the README's "Running on a cluster" shows, for the
cluster tests and benchmarks: a head and worker nodes on this machine, token authentication
with a token made by `ray get-auth-token --generate` in a home folder of their own.

Each node is `ray start ... --block` in a session of its own, so the test ends exactly the
nodes it started: SIGTERM to the `ray start` process (Ray's handler stops that node's
processes), then SIGKILL to whatever of its session is left. Never `ray stop`: it ends every
Ray on the machine, other people's and the test session's own local Ray included. Ray 2.60's
handler first drains the node for Ray Serve, waiting up to 30 s for its worker leases to be
returned: after a sweep the head waited out all 30 s on every stop. Nothing here serves
traffic, so the nodes are started with that drain off and stop at once.

Every port is given: other Rays on a shared machine hold Ray's default ports. `temp_dir` keeps
the cluster's session folders apart from any other Ray's (Ray puts unix sockets in it: keep it
short). On one machine `ray start --node-ip-address=127.0.0.1` takes the machine's network
address instead (Ray resolves loopback to a reachable address), and `ray start --address` in
Ray's single-machine mode refuses to run, so nodes started this way listen there.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

RAY_CLI = str(Path(sys.executable).with_name("ray"))
READY = "This command will now block forever"
# Read by the `ray start` process's SIGTERM handler: 0 skips the drain before it stops the node.
NO_DRAIN = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
# Per-node ports `ray start` would otherwise take from fixed defaults.
NODE_PORTS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-grpc-port",
              "--dashboard-agent-listen-port", "--metrics-export-port", "--runtime-env-agent-port")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def session_members(sid: int) -> set[int]:
    """Processes of session ``sid`` (from /proc: psutil does not report sessions)."""
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # state, ppid, pgrp, session
                members.add(int(entry.name))
    return members


def token_environment(home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A shell on this machine set up as the README says: ``RAY_AUTH_MODE=token`` and a token
    from `ray get-auth-token --generate` in ``home``/.ray/auth_token (mode 600). No other
    Ray setting of the calling process is passed on (a test session's own local Ray has its
    token and single-machine mode in the environment)."""
    env = {key: value for key, value in (base or os.environ).items() if not key.startswith("RAY_")}
    env.update(HOME=str(home), RAY_AUTH_MODE="token")
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run([RAY_CLI, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    (home / ".ray" / "auth_token").chmod(0o600)
    return env


class RayNode:
    """One `ray start --block` node in its own session."""

    def __init__(self, arguments: list[str], env: Mapping[str, str], log: Path, timeout: float = 180) -> None:
        self.command = [RAY_CLI, "start", *arguments, "--block"]
        self.log = log
        with log.open("w") as output:
            self.process = subprocess.Popen(self.command, env={**env, **NO_DRAIN}, stdout=output,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while READY not in log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"`{' '.join(self.command)}` did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    @property
    def pids(self) -> set[int]:
        return session_members(self.process.pid)

    @functools.cached_property
    def node_id(self) -> str:
        """Ray's id of this node, from its raylet's command line."""
        return self._raylet_argument("--node_id")

    @functools.cached_property
    def node_ip(self) -> str:
        """The address Ray gave this node (not 127.0.0.1 on a machine with a network)."""
        return self._raylet_argument("--node_ip_address")

    def _raylet_argument(self, flag: str) -> str:
        import psutil

        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                for part in psutil.Process(pid).cmdline():
                    if part.startswith(f"{flag}="):
                        return part.split("=", 1)[1]
        raise RuntimeError(f"no raylet among the processes of `{' '.join(self.command)}`")

    def kill(self) -> None:
        """The node dies at once, as a machine that loses power: every process SIGKILLed."""
        self._signal_all(signal.SIGKILL)
        self._wait_gone(30)

    def stop(self, timeout: float = 60) -> None:
        """End the node: SIGTERM to `ray start` (Ray stops the node's processes, then exits),
        then SIGKILL to anything of its session still there; raises if something survives."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        self._signal_all(signal.SIGKILL)
        self._wait_gone(30)

    def _signal_all(self, signum: int) -> None:
        for pid in self.pids | {self.process.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def _wait_gone(self, timeout: float) -> None:
        if self.process.poll() is None:
            self.process.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while (left := self.pids) and time.monotonic() < deadline:
            time.sleep(0.1)  # SIGKILLed processes are reaped by init: poll until they are gone.
        if left:
            raise RuntimeError(f"processes of `{' '.join(self.command)}` still running: {sorted(left)}")


class Cluster:
    """A head started as the README shows (``ray start --head --node-ip-address=127.0.0.1
    --port=P``) and workers (``ray start --address=127.0.0.1:P``), all in ``folder``."""

    def __init__(self, folder: Path, *, head_cpus: float, head_gpus: float = 0,
                 env: Mapping[str, str] | None = None) -> None:
        self.folder = folder
        self.temp_dir = folder / "ray"
        self.env = dict(env) if env is not None else token_environment(folder / "home")
        self.port, client_port = free_ports(2)
        self.address = f"127.0.0.1:{self.port}"
        self.workers: list[RayNode] = []
        self.head = self._node(["--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                                f"--ray-client-server-port={client_port}", "--include-dashboard=false",
                                f"--temp-dir={self.temp_dir}"], head_cpus, head_gpus, "head")

    def add_worker(self, cpus: float, gpus: float = 0) -> RayNode:
        node = self._node([f"--address={self.address}"], cpus, gpus, f"worker{len(self.workers) + 1}")
        self.workers.append(node)
        return node

    def _node(self, arguments: list[str], cpus: float, gpus: float, name: str) -> RayNode:
        ports = [f"{flag}={port}" for flag, port in zip(NODE_PORTS, free_ports(len(NODE_PORTS)), strict=True)]
        return RayNode([*arguments, f"--num-cpus={cpus:g}", f"--num-gpus={gpus:g}", "--disable-usage-stats",
                        *ports], self.env, self.folder / f"{name}.log")

    def stop(self) -> None:
        """Workers first, then the head (a worker without its head waits for it)."""
        errors = []
        for node in [*reversed(self.workers), self.head]:
            try:
                node.stop()
            except RuntimeError as error:
                errors.append(str(error))
        if errors:
            raise RuntimeError("; ".join(errors))


@contextlib.contextmanager
def cluster(folder: Path, *, head_cpus: float, workers: list[Mapping[str, float]] = (),
            head_gpus: float = 0, env: Mapping[str, str] | None = None) -> Iterator[Cluster]:
    """:class:`Cluster` with ``workers`` ({"cpus": ..., "gpus": ...} each), stopped afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    started = Cluster(folder, head_cpus=head_cpus, head_gpus=head_gpus, env=env)
    try:
        for worker in workers:
            started.add_worker(**worker)
        yield started
    finally:
        started.stop()
