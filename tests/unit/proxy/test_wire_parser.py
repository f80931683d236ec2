"""The wire core's request parser, without sockets: table-driven rules, each input fed whole,
byte by byte and split at random boundaries, on both builds (compiled and pure Python), and the
two builds compared on random and mutated input."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.proxy.wire import compiled_core
from limpet.proxy.wire import parser as python_core
from limpet.proxy.wire.parser import BODY, CHUNKED, END, ERROR, HEAD, LENGTH, NONE, UPGRADE

COMPILED = compiled_core()
CORES = [pytest.param(python_core, id="python")]
if COMPILED is not None:
    CORES.append(pytest.param(COMPILED, id="compiled"))

LIMIT = 4096
MAX_HEADERS = 20


def run(core: ModuleType, pieces: list[bytes], max_pipeline: int = 8) -> list[tuple]:
    """Feed ``pieces`` as a protocol class would (answering every request at once) and return
    the events in a comparable form: heads as tuples, adjacent body pieces joined."""
    p = core.RequestParser(LIMIT, MAX_HEADERS, max_pipeline)
    out: list[tuple] = []

    def take(events: list) -> None:
        for kind, value in events:
            if kind == HEAD:
                out.append((HEAD, value.astuple()))
            elif kind in (BODY, UPGRADE) and out and out[-1][0] == kind:
                out[-1] = (kind, out[-1][1] + value)
            elif kind in (BODY, UPGRADE):
                if value:
                    out.append((kind, value))
            else:
                out.append((kind, value))

    for piece in pieces:
        take(p.feed(piece))
        while p.stalled:  # the exchanges get answered; the held heads come next
            for _ in range(p.pending):
                p.answered()
            take(p.feed(b""))
    return out


def whole(core: ModuleType, data: bytes) -> list[tuple]:
    return run(core, [data])


def bytewise(core: ModuleType, data: bytes) -> list[tuple]:
    return run(core, [data[i : i + 1] for i in range(len(data))])


H = b"Host: x\r\n"
BAD = {
    # (request, status): every malformed request the integration tests send, and more
    "cl-and-te": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    "duplicate-cl": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    "cl-list": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 4\r\n\r\nabcd", 400),
    "cl-sign": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", 400),
    "cl-huge": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 9999999999999999999\r\n\r\n", 400),
    "bad-chunk-size": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
    "chunk-size-lf": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n",
        400,
    ),
    "chunk-no-crlf": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcd",
        400,
    ),
    "chunk-overflow": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 17 + b"\r\n",
        400,
    ),
    "te-gzip": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    "te-gzip-chunked": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
        400,
    ),
    "te-http10": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "bare-lf-request-line": (b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    "bare-lf-header": (b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400),
    "bare-cr": (b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n", 400),
    "space-before-colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "empty-name": (b"GET / HTTP/1.1\r\n" + H + b": x\r\n\r\n", 400),
    "no-host": (b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    "two-hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "nul-in-value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    "bad-method": (b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "bad-version": (b"GET / HTTP/9.9x\r\n" + H + b"\r\n", 400),
    "http2-version": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 400),
    "two-spaces": (b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    "connect": (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
    "too-many-fields": (
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(30)) + b"\r\n",
        431,
    ),
    "head-too-large": (b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),
    "unterminated-value": (b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 5000, 431),
    "unterminated-target": (b"GET /" + b"a" * 5000, 431),
    "trailers-too-large": (
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n"
        + b"X: "
        + b"a" * 5000,
        431,
    ),
    "bad-trailer": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX : y\r\n\r\n",
        400,
    ),
}


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_requests_are_refused_with_their_status(core: ModuleType, case: str) -> None:
    data, status = BAD[case]
    for events in (whole(core, data), bytewise(core, data)):
        assert events[-1][0] == ERROR and events[-1][1][0] == status, events
        # a head refused is never handed out; a body refused never ends (the protocol holds a
        # chunked head until its first chunk line is valid, so neither reaches a backend)
        assert not any(kind == END for kind, _ in events), "a refused request ended"
    p = core.RequestParser(LIMIT, MAX_HEADERS)
    p.feed(data)
    assert p.refused and p.buffered == 0 and p.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []


GOOD = {
    "get": (b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A:  v w \r\n\r\n", NONE, b""),
    "content-length": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        LENGTH,
        b"hello",
    ),
    "zero-length": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", NONE, b""),
    "chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n",
        CHUNKED,
        b"hello0123456789",
    ),
    "http10": (b"GET /old HTTP/1.0\r\n\r\n", NONE, b""),
    "leading-crlf": (b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", NONE, b""),
    "obs-text": (b"GET /\xe9 HTTP/1.1\r\nHost: x\r\nX-A: caf\xe9\r\n\r\n", NONE, b""),
}


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("case", sorted(GOOD))
def test_well_formed_requests_give_a_head_a_body_and_an_end(core: ModuleType, case: str) -> None:
    data, framing, body = GOOD[case]
    events = whole(core, data)
    assert events == bytewise(core, data)
    assert events[0][0] == HEAD and events[0][1][6] == framing
    assert events[-1] == (END, None)
    assert b"".join(v for k, v in events if k == BODY) == body


@pytest.mark.parametrize("core", CORES)
def test_head_values(core: ModuleType) -> None:
    p = core.RequestParser(LIMIT, MAX_HEADERS)
    [(kind, head), _] = p.feed(
        b"PUT /p HTTP/1.0\r\nHost: h\r\nConnection: Keep-Alive\r\nExpect: 100-continue\r\n\r\n"
    )
    assert kind == HEAD
    assert (head.method, head.target, head.version) == (b"PUT", b"/p", "1.0")
    assert head.headers[0] == (b"Host", b"h") and head.lnames[1] == b"connection"
    assert head.keep_alive and head.expect_continue and not head.upgrade
    [(_, head), _] = p.feed(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert not head.keep_alive


@pytest.mark.parametrize("core", CORES)
def test_upgrade_hands_over_the_bytes_after_the_head(core: ModuleType) -> None:
    p = core.RequestParser(LIMIT, MAX_HEADERS)
    events = p.feed(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00"
    )
    assert [k for k, _ in events] == [HEAD, END, UPGRADE] and events[0][1].upgrade
    assert events[2][1] == b"\x81\x00" and p.feed(b"more") == [(UPGRADE, b"more")]
    # Upgrade without "Connection: upgrade" is an ordinary request
    [(_, head), _] = core.RequestParser(LIMIT, MAX_HEADERS).feed(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
    )
    assert not head.upgrade


@pytest.mark.parametrize("core", CORES)
def test_pipelined_heads_stop_at_the_bound_and_resume_when_answered(core: ModuleType) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    p = core.RequestParser(LIMIT, MAX_HEADERS, 3)
    events = p.feed(request * 10)
    assert [k for k, _ in events].count(HEAD) == 3 and p.stalled
    assert p.buffered == 7 * len(request)
    assert p.feed(b"") == []
    p.answered()
    assert [k for k, _ in p.feed(b"")].count(HEAD) == 1 and p.stalled


@pytest.mark.parametrize("core", CORES)
def test_an_unterminated_head_is_refused_as_soon_as_it_passes_the_limit(core: ModuleType) -> None:
    p = core.RequestParser(LIMIT, MAX_HEADERS)
    assert p.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ") == []
    fed = 0
    while not p.refused:
        p.feed(b"a" * 512)
        fed += 512
        assert p.buffered <= LIMIT
    assert fed <= LIMIT + 512


# -- properties -------------------------------------------------------------------------------
NAMES = [
    b"Host",
    b"Content-Length",
    b"Transfer-Encoding",
    b"Connection",
    b"Expect",
    b"Upgrade",
    b"X-A",
    b"Cookie",
    b"host",
    b"TE",
]
VALUES = [
    b"x",
    b"3",
    b"0",
    b"chunked",
    b"close",
    b"keep-alive",
    b"upgrade",
    b"100-continue",
    b"websocket",
    b"a=b; c=d",
    b" spaced ",
    b"",
]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"PATCH"]))
    target = draw(st.sampled_from([b"/", b"/a?b=c", b"*", b"http://h/p", b"/socket.io/?EIO=4"]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    fields = draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=6))
    if version == b"1.1" and draw(st.booleans()):
        fields.insert(0, (b"Host", b"example"))
    head = b"%b %b HTTP/%b\r\n" % (method, target, version)
    head += b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n"
    body = draw(st.sampled_from([b"", b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"0\r\n\r\n"]))
    return head + body


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    data = b"".join(draw(st.lists(requests(), min_size=1, max_size=4)))
    for _ in range(draw(st.integers(0, 3))):  # mutations: flip, insert, delete a byte
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = bytes([draw(st.sampled_from([0, 9, 10, 13, 32, 58, 59, 48, 97, 255]))])
        data = (
            data[:i] + byte + data[i + 1 :]
            if op == "flip"
            else data[:i] + byte + data[i:]
            if op == "insert"
            else data[:i] + data[i + 1 :]
        )
    return data


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@pytest.mark.parametrize("core", CORES)
@given(data=streams(), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_any_split_gives_the_same_events(core: ModuleType, data: bytes, cuts: list[int]) -> None:
    expected = whole(core, data)
    assert run(core, split(data, cuts)) == expected


@pytest.mark.skipif(COMPILED is None, reason="the compiled wire core is not built")
@given(data=streams(), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_differential_both_cores_decide_the_same(data: bytes, cuts: list[int]) -> None:
    pieces = split(data, cuts)
    assert run(COMPILED, pieces) == run(python_core, pieces)  # type: ignore[arg-type]


@pytest.mark.skipif(COMPILED is None, reason="the compiled wire core is not built")
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 400), max_size=4))
def test_differential_random_bytes(data: bytes, cuts: list[int]) -> None:
    pieces = split(data, cuts)
    assert run(COMPILED, pieces) == run(python_core, pieces)  # type: ignore[arg-type]
