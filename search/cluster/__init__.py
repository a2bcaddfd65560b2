"""Where trials run: joining a cluster, placement rules and per-node accounting. No Ray here.

:mod:`search.ray_backend` asks Ray for the facts (the nodes and their resources, the node a
trial landed on, the GPU ids Ray assigned it, whether CUDA is present, why joining failed); the
decisions made from them live here, so they can be tested without a cluster.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import socket
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

LOOPBACK_NAMES = ("localhost",)


class ResourceError(RuntimeError):
    """The cluster cannot ever run one trial with the resources the spec asks for."""


class ClusterError(RuntimeError):
    """The cluster at the given address cannot be joined (no such address, nothing listening
    there, its token was refused), or a local Ray would not stay on loopback."""


def is_loopback(address: str | None) -> bool:
    """Whether ``HOST[:PORT]`` (or a bare host) names this machine's loopback interface."""
    if not address:
        return False
    host = address.strip()
    if host.startswith("["):  # [::1]:6379
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:  # 127.0.0.1:6379
        host = host.rsplit(":", 1)[0]
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[IPv6]:PORT`` too) as host and port; ClusterError when it is not one."""
    text = address.strip()
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or (":" in host and not text.startswith("[")):
        raise ClusterError(f"--address {address!r} is not HOST:PORT (the head's address and the port given to "
                           "`ray start --head --port`, e.g. 10.0.0.1:6379)")
    return host, int(port)


# An HTTP/2 client's first bytes, then an empty SETTINGS frame: a gRPC server (a Ray head's GCS)
# answers with a SETTINGS frame of its own (frame type 4, the 4th byte of the frame header).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS = 4


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail at once, in one line, unless a gRPC server (a Ray head) answers at ``address``:
    joining an address where no head listens, or another kind of server does, makes Ray retry
    for many minutes (measured: still waiting after 300 s in both cases). ``auto`` (the cluster
    `ray start` or a Ray job recorded on this machine) is Ray's to find; a Ray Client address
    (``ray://HOST:PORT``) is checked as its ``HOST:PORT``."""
    if address == "auto":
        return
    host, port = split_address(address.removeprefix("ray://"))
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            if os.environ.get("RAY_USE_TLS", "0") in ("0", ""):  # Ray's TLS mode speaks TLS first.
                connection.sendall(_HTTP2_PREFACE)
                answer = connection.recv(9)
                if len(answer) < 4 or answer[3] != _SETTINGS:
                    raise ClusterError(f"cannot join the Ray cluster at {address}: the server there is not a Ray "
                                       f"head (it does not speak gRPC); give the port of `ray start --head --port`")
    except socket.gaierror:
        raise ClusterError(f"cannot join the Ray cluster at {address}: unknown host {host!r}") from None
    except TimeoutError:
        raise ClusterError(f"cannot join the Ray cluster at {address}: no answer in {timeout:g} s") from None
    except OSError as error:
        reason = (error.strerror or type(error).__name__).lower()
        raise ClusterError(f"cannot join the Ray cluster at {address}: {reason} (is `ray start --head "
                           f"--port={port}` running on {host}?)") from None


def init_arguments(address: str | None, verbose: bool, py_modules: Sequence[str] = ()) -> dict[str, Any]:
    """``ray.init``'s arguments: a new local Ray of our own on loopback, dashboard off, or the
    cluster at ``address`` with the user's module files shipped to every node."""
    quiet = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR,
             "configure_logging": True}
    if address is None:
        # address="local": a new Ray of our own, even where `ray start` left a cluster running
        # (plain ray.init() would silently join that one).
        return {"address": "local", "include_dashboard": False, **quiet}
    return {"address": address, "runtime_env": {"py_modules": list(py_modules)} if py_modules else None, **quiet}


def check_fits(nodes: Iterable[Mapping[str, Any]], cpus: float, gpus: float) -> None:
    """Fail before any trial when no node could ever hold one trial (else Ray waits forever);
    ``nodes`` as Ray's ``ray.nodes()`` lists them."""
    nodes = [n for n in nodes if n.get("Alive")]
    fits = [n for n in nodes
            if n["Resources"].get("CPU", 0) >= cpus and n["Resources"].get("GPU", 0) >= gpus]
    if not fits:
        have = ", ".join(f"{n['NodeManagerAddress']}: {n['Resources'].get('CPU', 0):g} CPU, "
                         f"{n['Resources'].get('GPU', 0):g} GPU" for n in nodes)
        raise ResourceError(
            f"no node can run a trial needing {cpus:g} CPU and {gpus:g} GPU (nodes: {have}); "
            "lower `resources.cpus`/`resources.gpus` in the spec or add nodes")


def join_error(address: str, error: BaseException, auth_error: type[BaseException]) -> ClusterError:
    """What to tell the user when joining the cluster at ``address`` raised ``error``;
    ``auth_error`` is Ray's exception for a refused token."""
    if refused_for_auth(error, auth_error):
        return ClusterError(f"the Ray cluster at {address} refused this driver's token (give every node "
                            "and the driver the cluster's token: RAY_AUTH_MODE=token with ~/.ray/auth_token "
                            "or RAY_AUTH_TOKEN)")
    return ClusterError(f"cannot join the Ray cluster at {address}: {str(error).splitlines()[0]}")


def refused_for_auth(error: BaseException | None, auth_error: type[BaseException]) -> bool:
    """Whether a failed join was the cluster refusing the token: Ray raises ``auth_error`` or a
    plain ConnectionError whose causes say so, in words that vary with where the check failed."""
    while error is not None:
        text = str(error).lower()
        if isinstance(error, auth_error) or "authenticat" in text or "auth_token" in text:
            return True
        error = error.__cause__ or error.__context__
    return False


LOOPBACK_ONLY_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray's setting (read by its raylet from the environment) for prestarting workers when the first
# driver connects.
NO_PRESTART_VAR = "RAY_prestart_worker_first_driver"


def prepare_ray_environment(address: str | None) -> None:
    """Settings Ray reads from the environment when it is imported and started; call this
    before the first ``import ray`` in the process (the Ray processes it starts inherit them).

    A local Ray, or a driver joining a cluster at a loopback address, runs in Ray's
    single-machine mode (``LOOPBACK_ONLY_VAR`` off): otherwise Ray resolves 127.0.0.1 to the
    machine's public address, so a local Ray's servers listen on every interface and a driver
    looks for the head there (where nothing may listen). A local Ray also gets a private token
    (see :func:`private_token_for_local_ray`). Nodes started with `ray start` keep their own
    settings: on one machine, `ray start --node-ip-address=127.0.0.1` still takes the public
    address, and a driver attached to such a node takes it too.

    A local Ray starts no idle workers for its first driver (``NO_PRESTART_VAR``): Ray Tune
    gives its trial actors a runtime environment of their own, so they never run in those
    workers (benchmarks/worker_warmup.py), whose start took about 0.5 CPU-second from Ray's
    own start-up and the first trial's worker (measured with `ray.init` on 2 cores)."""
    if address is None or is_loopback(address):
        os.environ[LOOPBACK_ONLY_VAR] = "0"
    if address is None:
        private_token_for_local_ray()
        os.environ.setdefault(NO_PRESTART_VAR, "0")


def private_token_for_local_ray() -> bool:
    """Token authentication for a local Ray without touching ~/.ray/auth_token; True when it
    set the token (Ray must then read its settings again).

    Ray 2.60 turns token authentication on for every new local cluster and, with no token
    anywhere, writes one to ~/.ray/auth_token. Any later `ray start --head` on the machine
    then finds that file and requires the token, while `ray start --address` on a worker
    does not pick it up: the cluster commands fail with InvalidAuthToken. A fresh token in
    this process's environment (inherited by the Ray processes it starts, and only by them)
    keeps the local Ray authenticated and leaves the file alone. An explicit RAY_AUTH_MODE
    (token or disabled) is the user's choice and is kept, token source included.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    return True


def accelerator_for(gpu_ids: Sequence[Any], cuda_available: bool | None = None) -> str:
    """The Lightning accelerator of a trial: ``gpu`` when Ray assigned it a GPU and CUDA can
    use it (None: ask torch), else ``cpu`` (a GPU that is only a logical resource, as in tests,
    trains on CPU)."""
    if not gpu_ids:
        return "cpu"
    if cuda_available is None:
        # Imported here: torch and Lightning are slow to import.
        import torch

        cuda_available = torch.cuda.is_available()
    return "gpu" if cuda_available else "cpu"


def node_label(node_id: str | None, node_ip: str | None) -> str:
    """A short, readable name for a node: its address and the start of Ray's node id (several
    nodes may share one address, e.g. a test cluster on one machine)."""
    if not node_id:
        return "unknown node"
    return f"{node_ip or '?'} ({node_id[:8]})"


def trials_per_node(trials: Iterable[Any], current: Collection[str] | None = None) -> dict[str, int]:
    """Finished or running trials counted by the node they (last) ran on, busiest first;
    ``trials`` are Optuna trials with the ``node``/``node_ip`` user attributes. Given the ids of
    the ``current`` Ray's nodes, a node of an earlier run (a resumed sweep's first Ray: the
    same machine under another node id) counts under its address as ``(earlier runs)``."""
    def label(trial: Any) -> str:
        node, ip = trial.user_attrs.get("node"), trial.user_attrs.get("node_ip")
        if current is not None and node and node not in current:
            return f"{ip or '?'} (earlier runs)"
        return node_label(node, ip)

    counts = Counter(label(t) for t in trials)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def machines(trials: Iterable[Any]) -> int:
    """How many addresses the trials ran at (one machine may have had several Ray node ids)."""
    return len({t.user_attrs.get("node_ip") for t in trials if t.user_attrs.get("node")})


def nodes_line(trials: Iterable[Any], current: Collection[str] | None = None) -> str:
    counts = trials_per_node(trials, current)
    if not counts:
        return "trials per node: none ran"
    return "trials per node: " + ", ".join(f"{label}: {count}" for label, count in counts.items())
