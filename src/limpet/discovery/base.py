"""The interface every discovery offers the proxy: complete snapshots of endpoints."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One backend as discovery sees it.

    ``ready``: may receive new sessions. ``terminating``: going away; the proxy drains it (no new
    sessions, existing pins stay while it still serves). An endpoint that vanishes from a snapshot
    has left the pool.
    """

    id: str
    address: str  # "host:port", IPv6 as "[::1]:port"
    ready: bool = True
    terminating: bool = False


Snapshot = tuple[Endpoint, ...]


def snapshot(endpoints: Iterable[Endpoint]) -> Snapshot:
    """A canonical snapshot: one entry per id, ordered by id, so equal sets compare equal."""
    by_id = {e.id: e for e in endpoints}
    return tuple(by_id[k] for k in sorted(by_id))


def join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Discovery(Protocol):
    """``async for endpoints in discovery.watch(): ...`` yields a snapshot whenever it changes.

    The first snapshot comes as soon as it is known; the iterator runs until cancelled.
    """

    def watch(self) -> AsyncIterator[Snapshot]: ...


class MemberSink(Protocol):
    """What discovery feeds: ``limpet.pool.pool.Pool.set_members`` has this shape."""

    def set_members(self, members: Iterable[tuple[str, str, bool]], now: float) -> None: ...


def members(endpoints: Snapshot) -> list[tuple[str, str, bool]]:
    """Pool membership (id, address, terminating) from a snapshot.

    Ready endpoints serve; terminating ones stay as members so their pinned sessions can finish
    while the pool drains them; endpoints not ready yet (starting pods) stay out.
    """
    return [(e.id, e.address, e.terminating) for e in endpoints if e.ready or e.terminating]


async def feed_pool(
    discovery: Discovery,
    pool: MemberSink,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_change: Callable[[Snapshot], None] | None = None,
) -> None:
    """Apply every snapshot of ``discovery`` to ``pool`` until cancelled (the proxy's task)."""
    async for endpoints in discovery.watch():
        pool.set_members(members(endpoints), clock())
        if on_change is not None:
            on_change(endpoints)
