"""End-to-end tests: no server process outlives the test that started it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.server_process import reap


@pytest.fixture(autouse=True)
async def _reap_servers() -> AsyncIterator[None]:
    yield
    await reap()
