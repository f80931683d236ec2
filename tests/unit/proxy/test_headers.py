"""Header helpers: cookie parsing that survives odd neighbours, Connection tokens."""

from __future__ import annotations

import re

import pytest

from limpet.proxy import headers
from limpet.proxy.headers import HOP_BY_HOP, connection_tokens, parse_cookies
from limpet.proxy.responses import local_response


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (["a=1; b=2"], {"a": "1", "b": "2"}),
        (["a=1", "b=2"], {"a": "1", "b": "2"}),
        (["a=1; a=2"], {"a": "1"}),  # RFC 6265 §5.4: the first one wins
        (['a="quoted"'], {"a": "quoted"}),
        (["junk; limpet=tok; =x; ;"], {"limpet": "tok"}),
        (["limpet=a=b"], {"limpet": "a=b"}),
        ([], {}),
    ],
)
def test_parse_cookies(headers: list[str], expected: dict[str, str]) -> None:
    assert parse_cookies(headers) == expected


def test_connection_tokens_are_hop_by_hop_too() -> None:
    assert connection_tokens([b"close, X-Private", b" Keep-Alive "]) == {
        b"close",
        b"x-private",
        b"keep-alive",
    }
    assert {b"connection", b"transfer-encoding", b"upgrade", b"te"} <= HOP_BY_HOP


def test_local_response_is_complete_http() -> None:
    data = local_response(503, "limpet: nothing")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Content-Length: %d" % len(body) in head
    assert b"Connection: close" in head


def test_request_ids_are_the_prefix_and_a_rising_hex_counter() -> None:
    # (built from builtins, not a def: the same text as prefix + b"%x" % n)
    first, second = headers.new_request_id(), headers.new_request_id()
    for rid in (first, second):
        assert re.fullmatch(rb"[0-9a-f]{12}-[0-9a-f]+", rid), rid
        assert rid.startswith(headers._ID_PREFIX)
    n = int(first.rpartition(b"-")[2], 16)
    assert second == headers._ID_PREFIX + b"%x" % (n + 1)
