"""I/O: the downstream side of an exchange, as the exchange sees it.

``Exchange`` (limpet.proxy.http1) carries one request to a backend and its response back. It
needs a handful of things from the connection its request came on, and only those are listed
here: where to write the response (corked), how to hold the client back while a backend is slow
to read, the facts about the client that go into the forwarded head, its cookies, the response
timer, and what to do when the exchange ends (the next request, a tunnel, a refusal).

``Downstream`` (an HTTP/1.1 connection) implements it today; an HTTP/2 stream implements it too,
so one ``Exchange`` serves both without knowing which it talks to. Everything per proxy rather
than per connection (the router, timeouts, metrics, the request-id and Via settings) is in the
``ProxyContext`` that ``ctx`` names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from limpet.proxy.context import ProxyContext
    from limpet.proxy.upstream import UpstreamConnection


class ResponseTimer(Protocol):
    """The re-armable deadline an exchange runs while it waits for its response."""

    def arm(self, delay: float, callback: Callable[[], object]) -> None: ...
    def disarm(self) -> None: ...


class DownstreamSide(Protocol):
    """What an exchange needs from the client side of its request (HTTP/1.1 or an h2 stream)."""

    # (read-only here: an exchange reads these, only the connection sets them)
    @property
    def ctx(self) -> ProxyContext:
        """The proxy's context: router, timeouts, metrics, spawn, forwarding constants."""
        ...

    @property
    def client_ip(self) -> str:
        """The client's address, for the policies (the PROXY protocol's source, if any)."""
        ...

    @property
    def client_ip_bytes(self) -> bytes:
        """The same, encoded once, for X-Forwarded-For."""
        ...

    @property
    def scheme(self) -> bytes:
        """b"https" when TLS ended on this listener, else b"http" (X-Forwarded-Proto)."""
        ...

    @property
    def write_paused(self) -> bool:
        """The client is not reading what we write (its transport is over the water mark)."""
        ...

    @property
    def resp_timer(self) -> ResponseTimer:
        """The active exchange's response timeout."""
        ...

    # -- facts -----------------------------------------------------------------------------
    def connected(self) -> bool:
        """The client is still there (its connection, or stream, has not ended)."""
        ...

    def closing(self) -> bool:
        """This response is the connection's last (the client half-closed, or we stop)."""
        ...

    def cookies(self, values: list[bytes]) -> Mapping[str, str]:
        """The request's Cookie field values, parsed (and cached per connection)."""
        ...

    # -- writes --------------------------------------------------------------------------------
    def write(self, data: bytes) -> None: ...
    def cork(self) -> None:
        """Collect writes until ``flush`` (one send for a head and a small body)."""
        ...

    def flush(self) -> None: ...

    # -- flow control ------------------------------------------------------------------------------
    def pause_for(self, reason: str) -> None:
        """Stop reading the client for ``reason`` (a slow backend, a full body buffer...)."""
        ...

    def resume_for(self, reason: str) -> None: ...

    # -- ends ------------------------------------------------------------------------------------
    def exchange_done(self, exchange: object, keep_alive: bool) -> None:
        """``exchange`` wrote its whole response: the next request, or close."""
        ...

    def start_tunnel(
        self, conn: UpstreamConnection, early: bytes, release: Callable[[], object]
    ) -> None:
        """After ``101``: bytes flow both ways untouched between the client and ``conn``."""
        ...

    def answer_locally(self, exchange: object, status: int, reason: str) -> None:
        """Answer ``exchange`` from the proxy (an error) if it is the one being answered."""
        ...

    def close(self) -> None: ...
