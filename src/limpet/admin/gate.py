"""I/O: the admin listener's connections bounded like the data plane's: a connection limit of its
own, a request head within ``timeouts.header``, and idle keep-alive connections closed.

aiohttp's server has a keep-alive timeout but no request-head timeout and no connection limit:
1 100 idle admin connections once held every file descriptor of the process. ``AdminGate`` sits
in front of aiohttp's protocol (every call passed through; the admin is not a hot path), counts
connections, and closes one whose next request head has not ended (``CRLF CRLF``) within the
head timeout of its accept or of its previous response. A middleware (``responded``) tells the
gate when a response ended, so a dashboard's long event stream is never cut.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("limpet.admin")

BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: 52\r\n\r\n"
    b'{"error": "too many admin connections; retry later"}'
)


class Gates:
    """The open gates of one admin listener: the count and the limits they share."""

    def __init__(self, max_connections: int, head_timeout: Callable[[], float]) -> None:
        self.max_connections = max_connections
        self.head_timeout = head_timeout  # read per connection: a reload may change it
        self.open: dict[int, AdminGate] = {}  # id(transport) -> gate

    def responded(self, transport: Any) -> None:
        """A response on ``transport`` ended: its next request head is on the clock."""
        gate = self.open.get(id(transport))
        if gate is not None:
            gate.await_head()

    def close_all(self) -> None:
        for gate in list(self.open.values()):
            gate.close()


class AdminGate(asyncio.Protocol):
    """One admin connection: counted, its heads bounded, everything else passed to ``inner``."""

    def __init__(self, inner: Any, gates: Gates) -> None:
        self.inner = inner
        self.gates = gates
        self.transport: Any = None
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""  # the last 3 bytes seen while waiting for a head's end
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        gates = self.gates
        if len(gates.open) >= gates.max_connections:
            transport.write(BUSY)  # type: ignore[attr-defined]
            transport.close()
            self.transport = None
            return
        gates.open[id(transport)] = self
        self.inner.connection_made(transport)
        self.await_head()

    def await_head(self) -> None:
        self._cancel()
        if self.transport is None:
            return
        self.waiting, self.tail = True, b""
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.gates.head_timeout(), self._timeout)

    def _timeout(self) -> None:
        self.timer = None
        if self.transport is not None:
            log.info("admin: no request head within %ss; closing", self.gates.head_timeout())
            self.transport.abort()

    def _cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        if self.waiting:
            seen = self.tail + data
            if b"\r\n\r\n" in seen:
                self.waiting = False
                self._cancel()
            else:
                self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.transport is None:
            return None
        result: bool | None = self.inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        transport, self.transport = self.transport, None
        if transport is None:
            return  # refused over the limit: aiohttp never saw it
        self.gates.open.pop(id(transport), None)
        self.inner.connection_lost(exc)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
