"""The interface every discovery offers the proxy: complete snapshots of endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
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
