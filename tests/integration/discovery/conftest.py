"""Fixtures of the discovery tests: the stand-in Kubernetes API server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.discovery.fake_apiserver import FakeApiServer


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
