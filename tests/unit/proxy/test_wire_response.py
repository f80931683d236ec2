"""The wire core's response parser, without sockets: table-driven framing rules and refusals,
each response fed whole, byte by byte and split at random boundaries, on both builds (compiled
and pure Python), and the two builds compared on generated, mutated and random input."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.proxy.wire import compiled_response
from limpet.proxy.wire import response as python_core
from limpet.proxy.wire.response import (
    BODY,
    CHUNKED,
    END,
    ERROR,
    HEAD,
    LENGTH,
    NONE,
    UNTIL_CLOSE,
    UPGRADE,
)

COMPILED = compiled_response()
CORES = [pytest.param(python_core, id="python")]
if COMPILED is not None:
    CORES.append(pytest.param(COMPILED, id="compiled"))

LIMIT = 4096
MAX_FIELDS = 20


def run(core: ModuleType, pieces: list[bytes]) -> tuple[list[tuple], int]:
    """Feed ``pieces`` as the upstream connection does; the events in a comparable form (heads
    as tuples, adjacent body pieces joined, an END with the trailers kept by then) and the
    bytes held after a final response."""
    p = core.ResponseParser(LIMIT, MAX_FIELDS)
    out: list[tuple] = []
    for piece in pieces:
        for kind, value in p.feed(piece):
            if kind == HEAD:
                out.append((HEAD, value.astuple()))
            elif kind in (BODY, UPGRADE):
                if out and out[-1][0] == kind:
                    out[-1] = (kind, out[-1][1] + value)
                elif value:
                    out.append((kind, value))
            elif kind == END:
                out.append((END, p.trailers))
            else:
                out.append((kind, value))
    return out, p.buffered


def whole(core: ModuleType, data: bytes) -> tuple[list[tuple], int]:
    return run(core, [data])


def bytewise(core: ModuleType, data: bytes) -> tuple[list[tuple], int]:
    return run(core, [data[i : i + 1] for i in range(len(data))])


OK = b"HTTP/1.1 200 OK\r\n"
GOOD = {
    # name: (response, [(status, framing, keep_alive)...], body, ends, held)
    "length": (OK + b"Content-Length: 3\r\n\r\nabc", [(200, LENGTH, True)], b"abc", 1, 0),
    "length-then-more": (OK + b"Content-Length: 1\r\n\r\naXYZ", [(200, LENGTH, True)], b"a", 1, 3),
    "zero-length": (OK + b"Content-Length: 0\r\n\r\n", [(200, NONE, True)], b"", 1, 0),
    "chunked": (
        OK + b"Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
        [(200, CHUNKED, True)],
        b"abcde",
        1,
        0,
    ),
    "gzip-then-chunked": (
        OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
        [(200, CHUNKED, True)],
        b"z",
        1,
        0,
    ),
    "te-not-chunked-is-until-close": (
        OK + b"Transfer-Encoding: gzip\r\n\r\nzzz",
        [(200, UNTIL_CLOSE, False)],
        b"zzz",
        0,
        0,
    ),
    "until-close": (
        OK + b"Connection: close\r\n\r\nto the end",
        [(200, UNTIL_CLOSE, False)],
        b"to the end",
        0,
        0,
    ),
    "no-content-with-length": (
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        [(204, NONE, True)],
        b"",
        1,
        0,
    ),
    "not-modified": (
        b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
        [(304, NONE, True)],
        b"",
        1,
        0,
    ),
    "early-hints-then-final": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK + b"Content-Length: 2\r\n\r\nok",
        [(103, NONE, True), (200, LENGTH, True)],
        b"ok",
        2,
        0,
    ),
    "http10-keep-alive": (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
        [(200, LENGTH, True)],
        b"x",
        1,
        0,
    ),
    "http10-default-close": (
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
        [(200, LENGTH, False)],
        b"x",
        1,
        0,
    ),
    "close-listed": (
        OK + b"Connection: upgrade, Close\r\nContent-Length: 1\r\n\r\nx",
        [(200, LENGTH, False)],
        b"x",
        1,
        0,
    ),
    "no-reason": (b"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx", [(200, LENGTH, True)], b"x", 1, 0),
}


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("case", sorted(GOOD))
def test_framing_of_well_formed_responses(core: ModuleType, case: str) -> None:
    data, heads, body, ends, held = GOOD[case]
    events, buffered = whole(core, data)
    got = [(h[1][0], h[1][4], h[1][6]) for h in events if h[0] == HEAD]
    assert got == heads
    assert b"".join(v for k, v in events if k == BODY) == body
    assert sum(1 for k, _ in events if k == END) == ends
    assert buffered == held  # bytes after a final response are held, never parsed
    assert bytewise(core, data) == (events, buffered)


@pytest.mark.parametrize("core", CORES)
def test_101_hands_over_the_bytes_after_the_head(core: ModuleType) -> None:
    data = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x02hi"
    events, _ = whole(core, data)
    assert [k for k, _ in events] == [HEAD, UPGRADE] and events[1][1] == b"\x81\x02hi"
    p = core.ResponseParser(LIMIT, MAX_FIELDS)
    p.feed(data)
    assert p.feed(b"more") == [(UPGRADE, b"more")]


@pytest.mark.parametrize("core", CORES)
def test_head_values_and_reuse(core: ModuleType) -> None:
    p = core.ResponseParser(LIMIT, MAX_FIELDS)
    events = p.feed(OK + b"Set-Cookie:  a=b; Path=/ \r\nContent-Length: 1\r\n\r\nx")
    head = events[0][1]
    assert (head.status, head.reason, head.version) == (200, b"OK", "1.1")
    assert head.headers == [(b"Set-Cookie", b"a=b; Path=/"), (b"Content-Length", b"1")]
    assert p.feed(b"") == [] and not p.buffered
    p.reset()  # the connection is reused: the next response parses from a clean state
    assert [k for k, _ in p.feed(b"HTTP/1.1 204 No Content\r\n\r\n")] == [HEAD, END]


@pytest.mark.parametrize("core", CORES)
def test_trailers_are_kept_until_the_next_response(core: ModuleType) -> None:
    chunked = OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
    data = chunked + b"Grpc-Status: 0\r\nGrpc-Message:  fine \r\n\r\n"
    events, _ = whole(core, data)
    assert events[-1] == (END, [(b"Grpc-Status", b"0"), (b"Grpc-Message", b"fine")])
    assert bytewise(core, data) == (events, 0)
    p = core.ResponseParser(LIMIT, MAX_FIELDS)
    p.feed(data)
    p.reset()  # the connection is reused: the next response has none of them
    assert p.trailers is None
    p.feed(chunked + b"\r\n")
    assert p.trailers is None  # twin: a chunked body without a trailer section


BAD = {
    "not-http": b"SMTP ready\r\n\r\n",
    "http2": b"HTTP/2 200 OK\r\n\r\n",
    "status-two-digits": b"HTTP/1.1 20 OK\r\n\r\n",
    "status-below-100": b"HTTP/1.1 099 Odd\r\n\r\n",
    "cl-and-te": OK + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "duplicate-cl": OK + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "cl-list": OK + b"Content-Length: 3, 3\r\n\r\nabc",
    "cl-sign": OK + b"Content-Length: +3\r\n\r\nabc",
    "cl-huge": OK + b"Content-Length: 9999999999999999999\r\n\r\n",
    "bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
    "bare-cr": OK + b"X-A: a\rb\r\n\r\n",
    "obs-fold": OK + b"X-A: a\r\n b\r\n\r\n",
    "space-before-colon": OK + b"X-A : a\r\n\r\n",
    "nul-in-value": OK + b"X-A: a\x00b\r\n\r\n",
    "too-many-fields": OK + b"".join(b"X-%d: v\r\n" % i for i in range(30)) + b"\r\n",
    "head-too-large": OK + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n",
    "unterminated-head": OK + b"X-Big: " + b"a" * 5000,
    "bad-chunk-size": OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    "chunk-without-crlf": OK + b"Transfer-Encoding: chunked\r\n\r\n1\r\nab",
    "bad-trailer": OK + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX : y\r\n\r\n",
    "too-many-trailers": OK
    + b"Transfer-Encoding: chunked\r\n\r\n0\r\n"
    + b"".join(b"X-%d: v\r\n" % i for i in range(30))
    + b"\r\n",
    "trailers-too-large": OK
    + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-Big: "
    + b"a" * 5000
    + b"\r\n\r\n",
}


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("case", sorted(BAD))
def test_broken_responses_are_refused(core: ModuleType, case: str) -> None:
    events, _ = whole(core, BAD[case])
    assert events[-1][0] == ERROR and isinstance(events[-1][1], str)
    assert bytewise(core, BAD[case]) == (events, 0)
    p = core.ResponseParser(LIMIT, MAX_FIELDS)
    p.feed(BAD[case])
    assert p.refused and p.feed(OK + b"\r\n") == []  # refused from here on


# -- properties -------------------------------------------------------------------------------
NAMES = [b"Content-Length", b"Transfer-Encoding", b"Connection", b"Set-Cookie", b"X-A", b"Via"]
VALUES = [b"0", b"3", b"chunked", b"gzip", b"close", b"keep-alive", b"a=b", b" spaced ", b""]


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([b"100", b"101", b"103", b"200", b"204", b"304", b"404", b"502"]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    fields = draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=5))
    head = b"HTTP/%b %b Reason\r\n" % (version, status)
    head += b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n"
    body = draw(
        st.sampled_from(
            [b"", b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"0\r\n\r\n", b"0\r\nX-T: 1\r\nY:  2 \r\n\r\n"]
        )
    )
    data = head + body
    for _ in range(draw(st.integers(0, 3))):  # mutations: flip, insert, delete a byte
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
@given(data=responses(), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_any_split_gives_the_same_events(core: ModuleType, data: bytes, cuts: list[int]) -> None:
    assert run(core, split(data, cuts)) == whole(core, data)


@pytest.mark.skipif(COMPILED is None, reason="the compiled wire core is not built")
@given(data=responses(), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_differential_both_cores_decide_the_same(data: bytes, cuts: list[int]) -> None:
    pieces = split(data, cuts)
    assert run(COMPILED, pieces) == run(python_core, pieces)  # type: ignore[arg-type]


@pytest.mark.skipif(COMPILED is None, reason="the compiled wire core is not built")
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 400), max_size=4))
def test_differential_random_bytes(data: bytes, cuts: list[int]) -> None:
    pieces = split(b"HTTP/1.1 " + data, cuts)
    assert run(COMPILED, pieces) == run(python_core, pieces)  # type: ignore[arg-type]
