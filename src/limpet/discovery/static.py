"""Static discovery: the backends given on the command line or in the config file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from limpet.discovery.base import Endpoint, Snapshot, snapshot


class StaticDiscovery:
    """Yields its one snapshot, then waits until cancelled (a static pool never changes)."""

    def __init__(self, endpoints: Iterable[Endpoint]) -> None:
        self.endpoints = snapshot(endpoints)

    def __repr__(self) -> str:
        return f"StaticDiscovery({len(self.endpoints)} endpoints)"

    async def watch(self) -> AsyncIterator[Snapshot]:
        yield self.endpoints
        await asyncio.Event().wait()
