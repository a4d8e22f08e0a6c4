"""Shared fixtures: a real server on an ephemeral port and recording Socket.IO clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import RunningServer, fast_settings, running_server


@pytest.fixture
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return fast_settings(tmp_path)


@pytest.fixture
async def server(settings) -> AsyncIterator[RunningServer]:  # type: ignore[no-untyped-def]
    async with running_server(settings) as running:
        yield running
