"""I/O: the last step of a graceful stop: what an open connection gets at the drain deadline.

An upgraded HTTP connection (a WebSocket tunnel) gets a WebSocket close frame with status 1001
"going away" (RFC 6455 §7.4.1) on both sides, then a normal close that flushes it: the browser
sees 1001 and reconnects at once, instead of the 1006 "abnormal closure" a reset gives. The
frame goes unmasked to the client and masked to the backend (§5.1: client-to-server frames are
masked; the proxy is the backend's client). The tunnel relays bytes without parsing frames, so
the frame lands between two frames unless the deadline cuts a frame in the middle; that
connection was about to be reset anyway. Anything else (an exchange still running, an L4
tunnel) is aborted as before.

``Stoppable`` is the small protocol of a graceful stop that every downstream connection type
implements (HTTP/1.1, ``--mode tcp``; an HTTP/2 connection too): ``drain`` when the stop begins,
``go_away`` at the deadline. The server calls only these.
"""

from __future__ import annotations

import asyncio
import os
from typing import Protocol

from limpet.proxy.tunnel import Tunnel

GOING_AWAY = (1001).to_bytes(2, "big")
TO_CLIENT = b"\x88\x02" + GOING_AWAY  # FIN + close, unmasked, 2-byte payload


def to_backend() -> bytes:
    """A masked close frame with status 1001 (a fresh masking key each time, §5.3)."""
    key = os.urandom(4)
    return b"\x88\x82" + key + bytes(b ^ key[i % 4] for i, b in enumerate(GOING_AWAY))


class Stoppable(Protocol):
    """What the server asks of each open downstream connection when it stops."""

    def drain(self) -> None:
        """The stop began: close now what has nothing in flight; let the rest finish."""
        ...

    def go_away(self) -> None:
        """The drain deadline passed: end the connection now (see ``close``)."""
        ...


def close(transport: asyncio.BaseTransport | None, tunnel: Tunnel | None) -> None:
    """End one downstream connection at the drain deadline: an upgraded tunnel with 1001 close
    frames both ways, anything else aborted."""
    if transport is None:
        return
    if tunnel is not None and tunnel.upgraded:
        tunnel.close(to_client=TO_CLIENT, to_backend=to_backend())
        return
    transport.abort()  # type: ignore[attr-defined]
