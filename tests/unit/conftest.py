"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.inprocess import InProcessCluster


@pytest.fixture
def kl(tmp_path: Path) -> Iterator[InProcessCluster]:
    """A fresh API server over in-memory storage, and the kubelite CLI pointed at it."""
    cluster = InProcessCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()
