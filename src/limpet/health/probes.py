"""I/O: active HTTP health checks, one loop per pool, results recorded in the core Pool.

A probe is ``GET <path>`` on a fresh connection; any status below 500 counts as up (like
HAProxy's default ``http-check``). A probe that ran past its timeout, connecting or waiting for
the answer, is reported as PROBE_SLOW, not PROBE_FAIL: nothing said the backend is gone, and a
replica taking a storm of reconnects is slow in both (a full accept queue drops SYNs; a busy
event loop answers late), so a pool in panic still offers it (limpet.pool.health). Refused,
reset, unreachable, or a bad answer: PROBE_FAIL. Off the hot path, so plain asyncio streams are fine here.
Without active probes the loop still sends TICK so a passive ejection can expire.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from limpet.pool.health import HealthEvent
from limpet.tlsverify import strict_hint

if TYPE_CHECKING:
    from limpet.admin.metrics import ProxyMetrics
    from limpet.config.model import PoolConfig
    from limpet.proxy.upstream import UpstreamPool


class ProxyServer(Protocol):
    """The prober's owner, as the prober sees it (no import of limpet.proxy.server)."""

    metrics: ProxyMetrics

    @property
    def pools(self) -> Mapping[str, object]:
        """The pools by name: a reload that replaces a pool ends its prober."""
        ...


class PoolRuntime(Protocol):
    """A pool as the prober feeds it: its backends' addresses and the health state machine."""

    name: str
    cfg: PoolConfig
    upstreams: dict[str, UpstreamPool]

    def record(self, backend_id: str, event: HealthEvent) -> None: ...


log = logging.getLogger("limpet.health")


async def probe(
    host: str, port: int, path: str, timeout: float, ssl_context: ssl.SSLContext | None = None
) -> tuple[HealthEvent, str]:
    """One HTTP probe: (what it found, what was seen); over TLS to an https:// backend (verified
    as requests are, so a backend whose certificate fails is down)."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host,
                port,
                ssl=ssl_context,
                server_hostname=host if ssl_context is not None else None,
            ),
            timeout,
        )
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: limpet-health\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            return HealthEvent.PROBE_SLOW, f"connected, no answer within {timeout:g} s"
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return HealthEvent.PROBE_FAIL, f"not an HTTP response: {line[:40]!r}"
        status = int(parts[1])
        up = status < 500
        return HealthEvent.PROBE_OK if up else HealthEvent.PROBE_FAIL, f"status {status}"
    except TimeoutError:
        return HealthEvent.PROBE_SLOW, f"not connected within {timeout:g} s"
    except OSError as exc:
        return HealthEvent.PROBE_FAIL, strict_hint(f"{type(exc).__name__}: {exc}")
    finally:
        if writer is not None:
            writer.close()


async def run_probes(server: ProxyServer, runtime: PoolRuntime) -> None:
    health = runtime.cfg.health
    interval = health.interval if health.active else 1.0
    while server.pools.get(runtime.name) is runtime:  # a reload that replaced the pool ends it
        if health.active:
            targets = list(runtime.upstreams.values())
            results = await asyncio.gather(
                *(probe(u.host, u.port, health.path, health.timeout, u.ssl) for u in targets)
            )
            for upstream, (event, seen) in zip(targets, results, strict=True):
                up = event is HealthEvent.PROBE_OK
                server.metrics.probes.labels(
                    runtime.name, upstream.backend_id, "ok" if up else "fail"
                ).inc()
                if not up:
                    log.info("probe %s/%s failed: %s", runtime.name, upstream.backend_id, seen)
                runtime.record(upstream.backend_id, event)
        for backend_id in runtime.upstreams:
            runtime.record(backend_id, HealthEvent.TICK)
        await asyncio.sleep(interval)
