"""A stream's request fields to an HTTP/1.1 head, and a response head to HTTP/2 fields."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.proxy.h2 import messages
from limpet.proxy.h2.messages import (
    Malformed,
    Unsupported,
    request,
    request_trailers,
    response_fields,
    response_trailers,
)

BASE = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"a.example"),
    (b":path", b"/x?y=1"),
]


def test_pseudo_headers_become_target_and_host_first() -> None:
    req = request([*BASE, (b"accept", b"*/*")])
    assert (req.method, req.target) == (b"GET", b"/x?y=1")
    assert req.headers == [(b"host", b"a.example"), (b"accept", b"*/*")]
    assert req.lnames == [b"host", b"accept"]
    assert not req.websocket and req.chunked


def test_cookie_crumbs_are_joined_rfc9113_8_2_3() -> None:
    req = request([*BASE, (b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"lb=tok")])
    assert req.headers[-1] == (b"cookie", b"a=1; lb=tok")
    assert sum(n == b"cookie" for n in req.lnames) == 1


MALFORMED = [
    ("connection", [*BASE, (b"connection", b"keep-alive")]),
    ("keep-alive", [*BASE, (b"keep-alive", b"5")]),
    ("proxy-connection", [*BASE, (b"proxy-connection", b"x")]),
    ("transfer-encoding", [*BASE, (b"transfer-encoding", b"chunked")]),
    ("upgrade", [*BASE, (b"upgrade", b"websocket")]),
    ("te gzip", [*BASE, (b"te", b"gzip")]),
    ("upper-case name", [*BASE, (b"Accept", b"x")]),
    ("pseudo after regular", [(b"x", b"y"), *BASE]),
    ("unknown pseudo", [*BASE, (b":status", b"200")]),
    ("repeated pseudo", [*BASE, (b":path", b"/")]),
    ("no method", BASE[1:]),
    ("no path", BASE[:3]),
    ("relative path", [*BASE[:3], (b":path", b"x")]),
    ("host differs", [*BASE, (b"host", b"b.example")]),
    ("CR in value", [*BASE, (b"x", b"a\rb")]),
    ("leading space", [*BASE, (b"x", b" a")]),
    ("bad content-length", [*BASE, (b"content-length", b"1x")]),
    ("protocol on GET", [*BASE, (b":protocol", b"websocket")]),
]


@pytest.mark.parametrize(("name", "fields"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_are_refused(name: str, fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(Malformed):
        request(fields)


def test_twin_te_trailers_is_allowed_and_not_forwarded() -> None:
    req = request([*BASE, (b"te", b"trailers")])
    assert b"te" not in req.lnames


def test_extended_connect_websocket_becomes_an_upgrade() -> None:
    fields = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":path", b"/socket.io/?EIO=4&transport=websocket"),
        (b":authority", b"a.example"),
        (b"sec-websocket-version", b"13"),
    ]
    req = request(fields)
    assert req.websocket and req.method == b"GET"
    names = dict(req.headers)
    assert names[b"upgrade"] == b"websocket" and len(names[b"sec-websocket-key"]) == 24
    with pytest.raises(Malformed):
        request(fields, connect_protocol=False)  # not advertised: RFC 8441 §3


def test_classic_connect_and_other_protocols_are_answered_not_served() -> None:
    with pytest.raises(Unsupported) as exc:
        request([(b":method", b"CONNECT"), (b":authority", b"db:5432")])
    assert exc.value.status == 501
    with pytest.raises(Unsupported):
        request([(b":method", b"CONNECT"), (b":protocol", b"x"), *BASE[1:]])


def test_content_length_sets_the_framing() -> None:
    req = request([*BASE, (b"content-length", b"5")])
    assert req.content_length == 5 and not req.chunked


def test_response_fields_drop_connection_specific_and_keep_set_cookies_apart() -> None:
    head = [
        (b"Content-Type", b"text/plain"),
        (b"Connection", b"keep-alive, X-Hop"),
        (b"X-Hop", b"1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"lb=2; Path=/"),
    ]
    fields = response_fields(200, head)
    assert fields == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"lb=2; Path=/"),
    ]


def test_a_websocket_101_is_a_200_on_the_stream() -> None:
    head = [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", b"x"),
    ]
    assert response_fields(101, head, websocket=True) == [(b":status", b"200")]


def test_request_trailers_become_trailer_lines_without_forbidden_fields() -> None:
    fields = [(b"grpc-timeout", b"1S"), (b"content-length", b"9"), (b"x-sum", b"abc")]
    assert request_trailers(fields, 10) == b"grpc-timeout: 1S\r\nx-sum: abc\r\n"


@pytest.mark.parametrize(
    "fields",
    [
        [(b":path", b"/")],  # RFC 9113 §8.1: no pseudo-header in trailers
        [(b"X-Upper", b"v")],
        [(b"connection", b"close")],
        [(b"x-a", b"a\r\nb")],
    ],
    ids=["pseudo", "upper-case", "connection-specific", "crlf"],
)
def test_malformed_request_trailers(fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(Malformed):
        request_trailers(fields, 10)


def test_too_many_request_trailers_are_refused_like_a_head() -> None:
    with pytest.raises(Unsupported) as exc:
        request_trailers([(b"x-%d" % i, b"v") for i in range(11)], 10)
    assert exc.value.status == 431
    assert request_trailers([(b"x-%d" % i, b"v") for i in range(10)], 10)  # twin: at the bound


def test_response_trailers_are_lowered_and_filtered() -> None:
    got = response_trailers(
        [(b"Grpc-Status", b"0"), (b"Set-Cookie", b"a=b"), (b"Transfer-Encoding", b"x")]
    )
    assert got == [(b"grpc-status", b"0")]


def test_expect_100_continue_is_noticed_and_twin_without_it() -> None:
    assert request([*BASE, (b"expect", b"100-Continue")]).expect_continue
    assert not request([*BASE, (b"x-expect", b"100-continue")]).expect_continue


FIELD_BYTES = st.sampled_from(
    [b"a", b"z", b"-", b":", b"A", b" ", b"\t", b"\n", b"\r", b"\x00", b"1"]
)
NAMES = st.one_of(
    st.sampled_from([b":method", b":path", b":scheme", b":authority", b"cookie", b"x-a", b""]),
    st.lists(FIELD_BYTES, max_size=6).map(b"".join),
)
VALUES = st.one_of(
    st.sampled_from([b"GET", b"/", b"https", b"a.example", b"v"]),
    st.lists(FIELD_BYTES, max_size=6).map(b"".join),
)


def outcome(fields: list[tuple[bytes, bytes]]) -> object:
    try:
        req = request(fields)
    except (Malformed, Unsupported) as exc:
        return type(exc), str(exc)
    return req.method, req.target, req.headers


@given(
    extra=st.lists(st.tuples(NAMES, VALUES), max_size=5),
    at=st.integers(0, 4),
)
def test_the_whole_block_check_finds_what_the_field_checks_find(
    extra: list[tuple[bytes, bytes]], at: int
) -> None:
    """``suspect`` lets a block skip the per-field checks: differential against a run where
    every block is checked field by field."""
    fields = [*BASE[:at], *extra, *BASE[at:]]
    fast = outcome(fields)
    with patch.object(messages, "suspect", lambda _: True):
        assert outcome(fields) == fast
