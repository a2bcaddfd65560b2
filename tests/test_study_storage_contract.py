"""Optuna's own storage test case on the sweep driver's storage.

`DriverStorage` (search/study/cache.py) subclasses Optuna's private `_CachedStorage` and writes
Optuna's private table models, so a new Optuna can break it without any public API changing.
Optuna ships the contract every storage of its own passes (`optuna.testing.pytest_storages`,
run by Optuna's tests/storages_tests/test_storages.py); here it runs on `DriverStorage` over a
SQLite file in write-ahead-log mode, as a sweep opens it. pyproject bounds optuna at the newest
version this passed with.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from finesweep.search.study import driver_storage, leave_write_ahead
from optuna.storages import BaseStorage
from optuna.testing.pytest_storages import StorageTestCase


@pytest.fixture
def storage(tmp_path) -> Iterator[BaseStorage]:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    yield driver_storage(url)
    leave_write_ahead(url)


class TestDriverStorage(StorageTestCase):
    """Every case of Optuna's StorageTestCase, as Optuna runs it on its own storages."""
