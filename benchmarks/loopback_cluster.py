"""A multi-node Ray cluster on this machine, for the cluster tests and benchmarks: each node is
its own raylet and workers (Ray's own test cluster), every server on 127.0.0.1. Not part of
finesweep itself, which only joins clusters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def start_loopback_cluster(temp_dir: str, head: Mapping[str, Any],
                           workers: Sequence[Mapping[str, Any]] = ()) -> Any:
    """Start the cluster: ``head`` and each of ``workers`` are node arguments (``num_cpus``,
    ``num_gpus``, ...; a GPU declared here is a logical resource). Returns Ray's ``Cluster``:
    ``address`` to join, ``add_node(**args)``, ``remove_node(node, allow_graceful=False)`` kills
    a node's processes, ``shutdown()`` stops them all. ``temp_dir`` keeps its sessions apart from
    any other Ray on the machine (keep it short: Ray puts unix sockets in it).
    """
    from finesweep.search.cluster import prepare_ray_environment

    prepare_ray_environment("127.0.0.1")  # As a local sweep's Ray; the node processes inherit the setting.
    from ray.cluster_utils import Cluster

    reload_ray_auth()  # The caller may have set RAY_AUTH_MODE / RAY_AUTH_TOKEN for this cluster.
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


def reload_ray_auth() -> None:
    """Make Ray read RAY_AUTH_MODE / RAY_AUTH_TOKEN from the environment again. Ray caches them
    per process, and has no public way to re-read them; a sweep sets them before Ray is first
    imported and never needs this. Tests and benchmarks start several Rays with different
    settings in one process, and do."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
