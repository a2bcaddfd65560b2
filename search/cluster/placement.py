"""Whether a trial's workers can be placed, asked before Ray starts (this machine) or as soon as
it has joined a cluster (its nodes): a trial of ``resources.workers`` workers, each needing
``resources.cpus`` CPUs and ``resources.gpus`` GPUs, must fit, or Ray would wait forever.

No Ray here: the nodes are given as Ray's ``ray.nodes()`` lists them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finesweep.search.run_dir.files import cpu_count
from finesweep.search.spec import SpecError
from finesweep.search.spec.fields import FieldChecks
from finesweep.search.spec.loading import parse_yaml_text, read_text

if TYPE_CHECKING:
    from finesweep.search.spec import ResourcesSpec, SpecError, SweepSpec


def local_gpus() -> int:
    """The GPUs a local Ray would see: CUDA_VISIBLE_DEVICES where set, else the NVIDIA device
    files (no CUDA library is loaded to count them)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len([p for p in Path("/dev").glob("nvidia[0-9]*") if p.name[6:].isdigit()])


def workers_on(cpus: float, gpus: float, resources: ResourcesSpec) -> int:
    """How many of a trial's workers one node with ``cpus`` CPUs and ``gpus`` GPUs holds."""
    fits = int(cpus // resources.cpus)
    if resources.gpus > 0:
        fits = min(fits, int(gpus // resources.gpus))
    return fits


def placeable(nodes: Iterable[tuple[float, float]], resources: ResourcesSpec) -> bool:
    """Whether one trial's workers fit on ``nodes`` ((CPUs, GPUs) each) together. Ray's pack and
    spread placements are both best-effort: either fits exactly when the workers fit at all."""
    return sum(workers_on(cpus, gpus, resources) for cpus, gpus in nodes) >= resources.workers


def _need(resources: ResourcesSpec) -> str:
    gpus = f" and {resources.gpus:g} GPU" if resources.gpus else ""
    return f"{resources.workers} worker(s) of {resources.cpus:g} CPU{gpus} each"


def check_this_machine(spec: SweepSpec, cpus: int | None = None, gpus: int | None = None) -> SpecError | None:
    """A located error when the spec's trial cannot be placed on this machine (``cpus`` CPUs,
    ``gpus`` GPUs: by default what it has), where a local Ray would run it; None when it fits. (A one-worker trial
    that fits no node is refused once Ray has started, as before, by the same rule.)"""
    cpus = cpu_count() if cpus is None else cpus
    gpus = local_gpus() if gpus is None else gpus
    resources = spec.resources
    if resources.workers == 1 or placeable([(cpus, gpus)], resources):
        return None
    try:
        _, marks, _ = parse_yaml_text(spec.source, read_text(spec.source))
    except Exception:  # The spec was read once already; a line number is a nicety here.
        marks = {}
    checks = FieldChecks(spec.source, marks)
    most = workers_on(cpus, gpus, resources)
    checks.problem(("resources", "workers"), f"a trial this machine can place ({cpus} CPUs, {gpus} GPUs)",
                   _need(resources),
                   f"at most {most} such worker(s) fit here; lower resources.workers, cpus or gpus, "
                   "or join a cluster with --address")
    return SpecError(spec.source, checks.problems)


def cluster_problem(nodes: Iterable[Mapping[str, Any]], resources: ResourcesSpec) -> str | None:
    """Why the trial's workers cannot be placed on the cluster's live ``nodes``; None when they can."""
    alive = [n for n in nodes if n.get("Alive")]
    sizes = [(float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0))) for n in alive]
    if placeable(sizes, resources):
        return None
    have = ", ".join(f"{n['NodeManagerAddress']}: {cpus:g} CPU, {gpus:g} GPU"
                     for n, (cpus, gpus) in zip(alive, sizes, strict=True))
    return (f"the cluster cannot place a trial of {_need(resources)} (nodes: {have}); lower "
            "`resources.workers`, `resources.cpus` or `resources.gpus` in the spec, or add nodes")
