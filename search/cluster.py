"""Where trials ran: placement rules and per-node accounting. No Ray here.

:mod:`search.ray_backend` asks Ray for the facts (the node a trial landed on, the GPU ids
Ray assigned it, whether CUDA is present); the decisions made from them live here, so they
can be tested without a cluster.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

LOOPBACK_NAMES = ("localhost",)


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


def accelerator_for(gpu_ids: Sequence[Any], cuda_available: bool) -> str:
    """The Lightning accelerator of a trial: ``gpu`` when Ray assigned it a GPU and CUDA can
    use it, else ``cpu`` (a GPU that is only a logical resource, as in tests, trains on CPU)."""
    return "gpu" if gpu_ids and cuda_available else "cpu"


def node_label(node_id: str | None, node_ip: str | None) -> str:
    """A short, readable name for a node: its address and the start of Ray's node id (several
    nodes may share one address, e.g. a test cluster on one machine)."""
    if not node_id:
        return "unknown node"
    return f"{node_ip or '?'} ({node_id[:8]})"


def trials_per_node(trials: Iterable[Any]) -> dict[str, int]:
    """Finished or running trials counted by the node they (last) ran on, busiest first;
    ``trials`` are Optuna trials with the ``node``/``node_ip`` user attributes."""
    counts = Counter(node_label(t.user_attrs.get("node"), t.user_attrs.get("node_ip")) for t in trials)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def nodes_line(trials: Iterable[Any]) -> str:
    counts = trials_per_node(trials)
    if not counts:
        return "trials per node: none ran"
    return "trials per node: " + ", ".join(f"{label}: {count}" for label, count in counts.items())
