"""The wire core's head rewriting, without sockets: the rules on fixed cases, and the two builds
(pure Python and Cython) compared on random heads."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limpet.proxy.wire import compiled_rewrite
from limpet.proxy.wire import rewrite as python_rewrite

COMPILED = compiled_rewrite()
CORES = [pytest.param(python_rewrite, id="python")]
if COMPILED is not None:
    CORES.append(pytest.param(COMPILED, id="compiled"))


def fields(*pairs: tuple[bytes, bytes]) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    headers = list(pairs)
    return headers, [n.lower() for n, _ in headers]


def request(core: ModuleType, headers, lnames, *, trust=False, upgrade=False, chunked=False,
            expect=False, host_fallback=b"", scheme=b"http") -> bytes:  # fmt: skip
    drop = core.hop_by_hop(headers, lnames)
    return core.request_head(b"GET", b"/p", headers, lnames, drop, trust, b"10.0.0.1", scheme,
                             b"X-Request-Id", b"x-request-id", b"1.1 limpet", host_fallback,
                             upgrade, chunked, expect, lambda: b"rid-1")  # fmt: skip


@pytest.mark.parametrize("core", CORES)
def test_request_head_removes_hop_by_hop_and_sets_forwarding(core: ModuleType) -> None:
    headers, lnames = fields(
        (b"Host", b"h"),
        (b"Connection", b"keep-alive, X-Secret"),
        (b"X-Secret", b"s"),
        (b"Keep-Alive", b"5"),
        (b"X-Forwarded-For", b"1.2.3.4"),
        (b"X-Request-Id", b"theirs"),
        (b"Via", b"1.0 edge"),
        (b"Expect", b"100-continue"),
    )
    head = request(core, headers, lnames, expect=True)
    assert head.startswith(b"GET /p HTTP/1.1\r\nHost: h\r\n")
    for gone in (b"X-Secret", b"Keep-Alive", b"1.2.3.4", b"theirs", b"Expect"):
        assert gone not in head
    assert b"X-Forwarded-For: 10.0.0.1\r\n" in head and b"X-Request-Id: rid-1\r\n" in head
    assert b"Via: 1.0 edge, 1.1 limpet\r\n" in head and head.endswith(
        b"Connection: keep-alive\r\n\r\n"
    )
    trusted = request(core, headers, lnames, trust=True)
    assert (
        b"X-Forwarded-For: 1.2.3.4, 10.0.0.1\r\n" in trusted
        and b"X-Request-Id: theirs\r\n" in trusted
    )


@pytest.mark.parametrize("core", CORES)
def test_request_head_forwarded_proto_is_the_client_connections_scheme(core: ModuleType) -> None:
    headers, lnames = fields((b"Host", b"h"), (b"X-Forwarded-Proto", b"http"))
    assert b"X-Forwarded-Proto: http\r\n" in request(core, headers, lnames)
    tls = request(core, headers, lnames, scheme=b"https")
    assert b"X-Forwarded-Proto: https\r\n" in tls and tls.count(b"X-Forwarded-Proto") == 1
    # a trusted front (a balancer that ended TLS itself) says what its client used
    assert b"X-Forwarded-Proto: http\r\n" in request(
        core, headers, lnames, trust=True, scheme=b"https"
    )
    # nothing else an untrusted client sends contradicts it; a trusted front's is relayed
    headers, lnames = fields(
        (b"Host", b"h"), (b"Forwarded", b"for=1.2.3.4;proto=http"), (b"X-Forwarded-Port", b"80")
    )
    tls = request(core, headers, lnames, scheme=b"https")
    assert b"\nForwarded:" not in tls and b"X-Forwarded-Port" not in tls
    trusted = request(core, headers, lnames, trust=True, scheme=b"https")
    assert b"Forwarded: for=1.2.3.4;proto=http\r\n" in trusted
    assert b"X-Forwarded-Port: 80\r\n" in trusted


@pytest.mark.parametrize("core", CORES)
def test_request_head_upgrade_chunked_and_missing_host(core: ModuleType) -> None:
    headers, lnames = fields((b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"))
    head = request(core, headers, lnames, upgrade=True, host_fallback=b"10.0.0.9:80")
    assert b"Host: 10.0.0.9:80\r\n" in head
    assert head.endswith(b"Upgrade: websocket\r\nConnection: upgrade\r\n\r\n")
    head = request(core, *fields((b"Host", b"h")), chunked=True)
    assert head.endswith(b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n")


@pytest.mark.parametrize("core", CORES)
def test_response_head_framing(core: ModuleType) -> None:
    def respond(headers, **kw):  # type: ignore[no-untyped-def]
        args = dict(interim=False, bodyless=False, http10=False, must_close=False, keep_alive=True)
        args.update(kw)
        return core.response_head(200, b"OK", headers, b"1.1 limpet", b"c=1", *args.values())

    head, until_close, rechunk, close = respond([(b"Content-Length", b"3")])
    assert not (until_close or rechunk or close) and b"Set-Cookie: c=1\r\n" in head
    head, until_close, rechunk, close = respond([])  # close-delimited upstream body
    assert until_close and rechunk and not close and b"Transfer-Encoding: chunked" in head
    head, until_close, rechunk, close = respond([], http10=True)
    assert until_close and close and not rechunk and head.endswith(b"Connection: close\r\n\r\n")
    head, *_ = respond(
        [(b"Transfer-Encoding", b"chunked"), (b"Connection", b"X-A"), (b"X-A", b"1")]
    )
    assert b"X-A" not in head and b"Transfer-Encoding: chunked" in head


NAMES = [b"Host", b"Connection", b"Keep-Alive", b"X-Forwarded-For", b"X-Forwarded-Proto",
         b"X-Forwarded-Host", b"X-Request-Id", b"Via", b"Expect", b"Upgrade", b"TE", b"X-A",
         b"Content-Length", b"Transfer-Encoding", b"Set-Cookie", b"Forwarded",
         b"X-Forwarded-Port"]  # fmt: skip
VALUES = [b"", b"a", b"close", b"keep-alive, X-A", b"upgrade", b"1.0 x", b"3", b"chunked"]
heads = st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=8)


@pytest.mark.skipif(COMPILED is None, reason="the compiled wire core is not built")
@given(
    heads,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from([b"", b"h:1"]),
)
def test_differential_request_head(headers, trust, upgrade, chunked, expect, fallback) -> None:  # type: ignore[no-untyped-def]
    lnames = [n.lower() for n, _ in headers]
    kw = dict(trust=trust, upgrade=upgrade, chunked=chunked, expect=expect, host_fallback=fallback,
              scheme=b"https" if trust else b"http")  # fmt: skip
    assert request(COMPILED, headers, lnames, **kw) == request(
        python_rewrite, headers, lnames, **kw
    )


@pytest.mark.skipif(COMPILED is None, reason="the compiled wire core is not built")
@given(
    heads,
    st.sampled_from([101, 103, 200, 204, 304, 500]),
    st.lists(st.booleans(), min_size=5, max_size=5),
    st.sampled_from([b"", b"c=1"]),
)
def test_differential_response_head(headers, status, flags, cookie) -> None:  # type: ignore[no-untyped-def]
    args = (status, b"R", headers, b"1.1 limpet", cookie, *flags)
    assert COMPILED.response_head(*args) == python_rewrite.response_head(*args)  # type: ignore[union-attr]
