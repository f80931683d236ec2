"""The hot-path helpers of limpet.proxy.http1: lazy header facts, one-pass response fields,
and the re-armable Deadline."""

from __future__ import annotations

import asyncio

from limpet.proxy.headers import HOP_BY_HOP
from limpet.proxy.http1 import Deadline, LazyHeaders
from limpet.proxy.wire.rewrite import relay_fields


def test_lazy_headers_lowercase_and_join_repeats() -> None:
    raw = [(b"X-User", b"ann"), (b"Accept", b"a"), (b"accept", b"b")]
    headers = LazyHeaders(raw, [n.lower() for n, _ in raw])
    assert headers._dict is None  # nothing decoded until a policy asks
    assert headers.get("x-user") == "ann" and headers["accept"] == "a, b"
    assert headers.get("X-User") is None  # names are lower-case, as RequestFacts documents
    assert dict(headers) == {"x-user": "ann", "accept": "a, b"} and len(headers) == 2


def test_relay_fields_drops_hop_by_hop_and_reports_framing() -> None:
    fields = [
        (b"Content-Length", b"3"),
        (b"Connection", b"keep-alive, X-Secret"),
        (b"X-Secret", b"s"),
        (b"Via", b"1.1 up"),
        (b"Transfer-Encoding", b"chunked"),
    ]
    out, has_length, chunked, via, listed = relay_fields(200, b"OK", fields, HOP_BY_HOP)
    head = b"".join(out)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"X-Secret: s" in head
    assert has_length and chunked and via == b"1.1 up" and listed == [b"keep-alive, X-Secret"]
    out, *_ = relay_fields(200, b"OK", fields, HOP_BY_HOP | {b"x-secret"})
    assert b"X-Secret" not in b"".join(out)  # the second pass the caller makes


def test_deadline_fires_once_at_the_latest_deadline_and_not_when_disarmed() -> None:
    async def run() -> list[str]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        d = Deadline(loop)
        d.arm(0.05, lambda: fired.append("first"))
        d.arm(0.15, lambda: fired.append("moved later"))  # keeps the loop timer, sleeps on
        await asyncio.sleep(0.3)
        gone = Deadline(loop)
        gone.arm(0.05, lambda: fired.append("disarmed"))
        gone.disarm()
        earlier = Deadline(loop)
        earlier.arm(10, lambda: fired.append("too late"))
        earlier.arm(0.05, lambda: fired.append("moved earlier"))  # replaces the loop timer
        await asyncio.sleep(0.2)
        earlier.cancel()
        return fired

    assert asyncio.run(run()) == ["moved later", "moved earlier"]
