"""Shared fixtures: a real server on an ephemeral port and recording Socket.IO clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support import (
    RunningServer,
    cluster_of,
    fast_settings,
    missing_tool,
    running_server,
)


@pytest.fixture
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return fast_settings(tmp_path)


@pytest.fixture
async def server(settings) -> AsyncIterator[RunningServer]:  # type: ignore[no-untyped-def]
    async with running_server(settings) as running:
        yield running


@pytest.fixture(params=[0, 2], ids=["one-process", "cluster-of-2"])
def each_mode(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run a test on one process, then on two processes in cluster mode (a real Redis)."""
    from tests.cluster_support import REDIS

    if request.param and REDIS is None:
        missing_tool("redis-server is not installed")
    with cluster_of(request.param):
        yield request.param


@pytest.fixture
def needs_redis() -> None:
    from tests.cluster_support import REDIS

    if REDIS is None:
        missing_tool("redis-server is not installed")
