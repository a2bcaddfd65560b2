"""Shared fixtures. One local Ray per test session: starting Ray costs seconds, and its
reused workers keep torch and Lightning imported between the sweeps of different tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def local_ray():
    from finesweep.search.cluster import prepare_ray_environment

    prepare_ray_environment(None)
    from finesweep.search import ray_backend

    ray_backend.start_ray(None)
    yield
    import ray

    ray.shutdown()


@pytest.fixture
def write_spec(tmp_path):
    """Write YAML text to a spec file in a temporary folder and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
