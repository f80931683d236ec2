"""The proxy's protocol classes on in-memory transports: a real Downstream, Exchange and
UpstreamConnection (either build, limpet.proxy.builds) fed bytes the way the loop would feed
them. Used by tests/unit/proxy (no sockets)."""

from __future__ import annotations

import argparse
import re

from hypothesis import strategies as st

from limpet.proxy import builds, cli, http1, upstream
from limpet.proxy.server import ProxyServer
from limpet.proxy.upstream import UpstreamConnection


class Transport:
    """What a protocol class uses of an asyncio transport; records what was written."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False
        self.reading = True
        self.eof = False  # write_eof was called
        self.can_eof = True  # False: like a TLS transport, no half-close

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def take(self) -> bytes:
        data, self.out = b"".join(self.out), []
        return data

    def get_extra_info(self, key: str, default: object = None) -> object:
        return ("127.0.0.1", 5555) if key == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    abort = close

    def can_write_eof(self) -> bool:
        return self.can_eof

    def write_eof(self) -> None:
        self.eof = True


class Rig:
    """One downstream connection and one idle upstream connection to backend b0."""

    def __init__(
        self,
        protocol: type[http1.Downstream] = http1.Downstream,
        connection: type[UpstreamConnection] = UpstreamConnection,
        affinity: str = "none",
    ) -> None:
        self.connection = connection
        parser = argparse.ArgumentParser()
        cli.configure(parser)
        args = parser.parse_args(
            [
                "--backend",
                "b0=http://127.0.0.1:9",
                "--secret",
                "s",
                "--no-health",
                "--affinity",
                affinity,
            ]
        )
        self.server = ProxyServer(cli.resolve(args), b"s", admin=False)
        self.runtime = self.server.pools["default"]
        self.pool = self.runtime.upstreams["b0"]
        self.down = protocol(self.server.context)
        self.client = Transport()
        self.down.connection_made(self.client)  # type: ignore[arg-type]
        self.conn, self.backend = self.upstream()

    def upstream(self) -> tuple[UpstreamConnection, Transport]:
        conn = self.connection(self.pool)
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        self.pool.put(conn)
        return conn, transport


# -- random scripts of client bytes, backend bytes and events (the differential tests) ----------
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
    b"DELETE /d HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k1\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n",
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
#: a new cookie token's text is random too (its entropy), masked the same way
TOKEN = re.compile(rb"(?im)^(set-cookie: limpet=)[^;\r\n]*")


def masked(data: bytes) -> bytes:
    return TOKEN.sub(rb"\1*", REQUEST_ID.sub(rb"\1*", data))


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
    """Apply one step of the script; what an observer sees of the rig after it (the bytes
    each side got, the transports, the states, the pool's idle connections and counts)."""
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
        masked(rig.client.take()),
        masked(rig.backend.take()),
        rig.client.closed,
        rig.client.reading,
        rig.client.eof,
        rig.backend.closed,
        rig.down.state,
        active.state if active is not None else None,
        len(rig.down.queue),
        len(rig.pool.idle),
        rig.runtime.open["b0"],
        sorted(rig.runtime.response_counts.items()),
    )


def without_fast_path(protocol: type[http1.Downstream]) -> type[http1.Downstream]:
    """``protocol`` with every request on the reference Exchange (as LIMPET_NO_FASTPATH=1)."""
    return type(protocol.__name__ + "WithoutFastPath", (protocol,), {"fast_path": False})


COMPILED_HTTP1 = builds.compiled_http1()
COMPILED_UPSTREAM = builds.compiled_upstream()
#: the builds of the protocol code present here (the compiled one when it was built)
BUILDS = ["python"] + (["compiled"] if COMPILED_HTTP1 is not None else [])


def classes(build: str) -> tuple[type[http1.Downstream], type[upstream.UpstreamConnection]]:
    if build == "compiled":
        assert COMPILED_HTTP1 is not None and COMPILED_UPSTREAM is not None
        return COMPILED_HTTP1.Downstream, COMPILED_UPSTREAM.UpstreamConnection
    return http1.Downstream, upstream.UpstreamConnection


async def compare(
    script: list[tuple[str, bytes]],
    build: str,
    fast_protocol: type[http1.Downstream] | None = None,
    affinity: str = "none",
) -> int:
    """Run ``script`` on both paths; how many of its requests the fast path took."""
    downstream, connection = classes(build)
    taken = Rig(fast_protocol or downstream, connection, affinity)
    reference = Rig(without_fast_path(downstream), connection, affinity)
    assert taken.down.fast_path and not reference.down.fast_path
    took = 0
    for n, (kind, data) in enumerate(script):
        seen = step(taken, kind, data)
        took += type(taken.down.active).__name__ == "FastPath"
        want = step(reference, kind, data)
        assert seen == want, f"step {n} ({kind} {data!r}) of {script!r}"
    taken.down.connection_lost(None)
    reference.down.connection_lost(None)
    return took
