"""Differential: the compiled protocol code (limpet.proxy._chttp1, _cupstream) against its
pure-Python reference (limpet.proxy.http1, upstream).

The same script of client bytes, backend bytes and connection events, cut at the same random
boundaries and with the same mutated bytes, drives a Rig of each build; after every step both
must have written the same bytes to the backend and to the client, be in the same states and
have raised the same exception, if any. The X-Request-Id a request gets is random, so its value
is masked before comparing.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.proxy import builds, http1, upstream
from tests.support.protocol import Rig

COMPILED_HTTP1 = builds.compiled_http1()
COMPILED_UPSTREAM = builds.compiled_upstream()
pytestmark = pytest.mark.skipif(
    COMPILED_HTTP1 is None or COMPILED_UPSTREAM is None,
    reason="the compiled protocol code is not built (run scripts/bootstrap)",
)

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nCookie: limpet=abc; other=1\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET http://y:81/abs HTTP/1.1\r\nHost: x\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"PUT /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: mine\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nKeep-Alive: 5\r\n\r\n",
]
RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    b"HTTP/1.1 500 Oops\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nhi",
    b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\ny",
]
EVENTS = ["client-eof", "client-full", "client-drained", "upstream-lost", "response-timeout"]
REQUEST_ID = re.compile(rb"(?im)^(x-request-id: )[^\r\n]*")


@st.composite
def pieces(draw: st.DrawFn, samples: list[bytes]) -> list[bytes]:
    """One sample, maybe with one byte replaced, cut at up to three random places."""
    data = draw(st.sampled_from(samples))
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@st.composite
def scripts(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    script: list[tuple[str, bytes]] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["client", "client", "backend", "backend", "event"]))
        if kind == "client":
            script += [("client", p) for p in draw(pieces(REQUESTS))]
        elif kind == "backend":
            script += [("backend", p) for p in draw(pieces(RESPONSES))]
        else:
            script.append((draw(st.sampled_from(EVENTS)), b""))
    return script


def step(rig: Rig, kind: str, data: bytes) -> tuple[object, ...]:
    """Apply one step of the script; what an observer sees of the rig after it."""
    error = ""
    try:
        if kind == "client":
            rig.down.data_received(data)
        elif kind == "backend":
            rig.conn.data_received(data)
        elif kind == "client-eof":
            rig.down.eof_received()
        elif kind == "client-full":
            rig.down.pause_writing()
        elif kind == "client-drained":
            rig.down.resume_writing()
        elif kind == "upstream-lost":
            rig.conn.connection_lost(None)
        elif kind == "response-timeout" and rig.down.active is not None:
            rig.down.active.response_timeout()
    except Exception as exc:  # the same failure in both builds is the same behaviour
        error = type(exc).__name__
    active = rig.down.active
    return (
        error,
        REQUEST_ID.sub(rb"\1*", rig.client.take()),
        REQUEST_ID.sub(rb"\1*", rig.backend.take()),
        rig.client.closed,
        rig.client.reading,
        rig.client.eof,
        rig.backend.closed,
        rig.down.state,
        active.state if active is not None else None,
        len(rig.down.queue),
    )


async def run(script: list[tuple[str, bytes]]) -> None:
    assert COMPILED_HTTP1 is not None and COMPILED_UPSTREAM is not None
    compiled = Rig(COMPILED_HTTP1.Downstream, COMPILED_UPSTREAM.UpstreamConnection)
    reference = Rig(http1.Downstream, upstream.UpstreamConnection)
    assert type(compiled.down) is not type(reference.down)
    for n, (kind, data) in enumerate(script):
        seen = step(compiled, kind, data)
        want = step(reference, kind, data)
        assert seen == want, f"step {n} ({kind} {data!r}) of {script!r}"
    compiled.down.connection_lost(None)
    reference.down.connection_lost(None)


@given(scripts())
def test_both_builds_forward_and_answer_the_same_bytes(script: list[tuple[str, bytes]]) -> None:
    # (a loop per example: the exchanges arm timers and may start a connect task, never run)
    asyncio.run(run(script))


def test_the_builds_are_two() -> None:
    """The twin really is compiled (else the differential compares the reference to itself)."""
    assert COMPILED_HTTP1 is not None and COMPILED_HTTP1.COMPILED and not http1.COMPILED
    assert COMPILED_UPSTREAM is not None and COMPILED_UPSTREAM.COMPILED
    assert not upstream.COMPILED
