"""I/O accounting, one policy: what a failed backend connect costs, and whether to repin.

An HTTP exchange (limpet.proxy.http1) and a ``--mode tcp`` connection (limpet.proxy.tcp) follow
the same rule when a backend refuses or times out: the failure counts against the backend
(passive health, ``limpet_upstream_connect_failures``), the backend joins the ones this request
has failed on, and the pool's policy picks again with those excluded, up to ``MAX_TRIES``
backends in all; each new pick is a repin (``limpet_repins``). The HTTP-only retries (a stale
pooled connection, a replayable request whose backend closed) are decided in http1.py: a TCP
connection has no pooled connections and nothing is written before it is connected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from limpet.pool.health import HealthEvent

if TYPE_CHECKING:
    from limpet.admin.metrics import ProxyMetrics
    from limpet.proxy.context import PoolRuntimeView

#: backends one request or TCP connection tries: the one picked first and two repins
MAX_TRIES = 3


def connect_failed(
    runtime: PoolRuntimeView, metrics: ProxyMetrics, backend_id: str, failed: set[str]
) -> bool:
    """Count a failed connect to ``backend_id``; True when another backend may be tried."""
    runtime.passive(backend_id, HealthEvent.PASSIVE_FAIL)
    metrics.upstream_connect_failures.labels(runtime.name, backend_id).inc()
    failed.add(backend_id)
    return len(failed) < MAX_TRIES


def repinned(runtime: PoolRuntimeView, metrics: ProxyMetrics) -> None:
    """Another backend is being picked after a failure."""
    metrics.repins.labels(runtime.name).inc()
