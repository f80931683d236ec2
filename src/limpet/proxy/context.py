"""What the protocol classes see of the proxy: a narrow context, not the server.

``ProxyContext`` carries the loop, the limits and timeouts, the metrics, the router, the task
spawner and the set of open connections (as uvicorn's protocols receive ``ServerState``).
``ProxyServer`` builds one and hands it to every ``Downstream`` and ``TcpDownstream``, so
nothing under proxy/ imports the server and there is no cycle to defer. ``PoolRuntimeView`` is
the part of a pool's runtime an exchange uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from limpet.admin.metrics import ProxyMetrics
from limpet.affinity.base import Pick, RequestFacts
from limpet.config.model import ForwardingConfig, LimitsConfig, TimeoutsConfig
from limpet.pool.health import HealthEvent
from limpet.proxy.idle import IdleTimers
from limpet.proxy.upstream import UpstreamPool


class PoolRuntimeView(Protocol):
    """A pool as an exchange uses it: pick a backend, take a connection, report outcomes."""

    name: str
    policy: Any
    upstreams: dict[str, UpstreamPool]

    def pick(self, facts: RequestFacts, exclude: set[str] | None = None) -> Pick: ...
    def passive(self, backend_id: str, event: HealthEvent) -> None: ...
    def opened(self, backend_id: str, pick: Pick) -> None: ...
    def closed(self, backend_id: str) -> None: ...
    def count_response(self, backend_id: str, status: int) -> None: ...


class ProxyContext:
    """The loop, limits, metrics, router, task spawner and connection set of one proxy."""

    __slots__ = (
        "_forwarding",
        "connections",
        "idle",
        "limits",
        "loop",
        "metrics",
        "request_id_lower",
        "request_id_name",
        "route",
        "spawn",
        "stopping",
        "timeouts",
        "trust_forwarded",
        "via",
        "via_h2",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: LimitsConfig,
        timeouts: TimeoutsConfig,
        forwarding: ForwardingConfig,
        metrics: ProxyMetrics,
        route: Callable[[str, str], PoolRuntimeView | None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        connections: set[Any],
    ) -> None:
        self.loop = loop
        self.limits = limits
        self.timeouts = timeouts
        self.forwarding = forwarding  # (and the constants derived from it: see the setter)
        self.metrics = metrics
        self.route = route
        self.spawn = spawn
        self.connections = connections
        #: shutting down: refuse new connections, answer with Connection: close
        self.stopping = False
        #: the idle deadlines of every tunnel, on one loop timer (limpet.proxy.idle)
        self.idle: IdleTimers[Any] = IdleTimers(loop)

    @property
    def forwarding(self) -> ForwardingConfig:
        """The forwarding settings (a reload replaces them for requests from then on)."""
        return self._forwarding

    @forwarding.setter
    def forwarding(self, forwarding: ForwardingConfig) -> None:
        # encoded once here, not per connection or per request (the rewritten head uses them)
        self._forwarding = forwarding
        self.trust_forwarded = forwarding.trust_forwarded
        self.request_id_name = forwarding.request_id_header.encode()
        self.request_id_lower = self.request_id_name.lower()
        self.via = b"1.1 " + forwarding.via.encode()
        #: a request received over HTTP/2 says so in the Via the backend gets (RFC 9110 §7.6.3)
        self.via_h2 = b"2 " + forwarding.via.encode()

    def __repr__(self) -> str:
        return f"ProxyContext(connections={len(self.connections)}, stopping={self.stopping})"
