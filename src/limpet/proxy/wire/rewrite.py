"""SANS-IO: head rewriting of the wire core: the request head sent upstream and the response head
sent downstream, as bytes, from the parsed fields and the decisions already made.

Request (RFC 9110 §7.6): hop-by-hop fields and every field named in Connection are removed;
X-Forwarded-For/-Proto/-Host are set (replaced, or extended when the client is trusted; the
proto is the client connection's scheme, https when TLS ended here); Forwarded and
X-Forwarded-Port are relayed from a trusted client only;
the request id is kept (trusted) or the one given; ``Via`` gets this proxy appended; the
upstream request is HTTP/1.1, keep-alive, re-chunked when the body is chunked.
Response: the same removal and ``Via``; the affinity ``Set-Cookie`` (a pin or a repin) is
added; the body framing for the client is decided (RFC 9112 §6.3): a close-delimited or chunked
upstream body is re-chunked for an HTTP/1.1 client, delimited by closing for HTTP/1.0.

Plain functions over bytes, no I/O; Cython compiles this module too (limpet.proxy.wire._crewrite,
see setup.py) and the unit tests compare the two builds.
"""

from __future__ import annotations

from collections.abc import Callable

#: RFC 9110 §7.6.1: fields meant for one connection only; never forwarded. Proxy-Connection and
#: Keep-Alive are not in the RFC's list but are de-facto hop-by-hop (RFC 9112 Appendix C.2.2).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
#: what an untrusted client may not say about itself: X-Forwarded-For/-Proto/-Host are
#: replaced; Forwarded (RFC 7239) and X-Forwarded-Port are dropped (not generated here), so no
#: field the backend reads contradicts X-Forwarded-Proto
FORWARDED = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
        b"x-forwarded-port",
    }
)


def connection_tokens(values: list[bytes]) -> set[bytes]:
    """The field names listed in Connection (RFC 9110 §7.6.1): also hop-by-hop."""
    out: set[bytes] = set()
    for v in values:
        for token in v.split(b","):
            token = token.strip().lower()
            if token:
                out.add(token)
    return out


def hop_by_hop(headers: list[tuple[bytes, bytes]], lnames: list[bytes]) -> frozenset[bytes]:
    """The request fields never forwarded: the fixed set and those Connection names."""
    if b"connection" not in lnames:
        return HOP_BY_HOP
    values = [headers[i][1] for i in range(len(lnames)) if lnames[i] == b"connection"]
    return HOP_BY_HOP | connection_tokens(values)


def request_head(
    method: bytes,
    url: bytes,
    headers: list[tuple[bytes, bytes]],
    lnames: list[bytes],
    drop: frozenset[bytes],
    trust: bool,
    client_ip: bytes,
    scheme: bytes,
    rid_name: bytes,
    rid_lower: bytes,
    via_mine: bytes,
    host_fallback: bytes,
    upgrade: bool,
    chunked: bool,
    expect_continue: bool,
    new_id: Callable[[], bytes],
) -> bytes:
    """The request head for the backend (see the module docstring)."""
    out = [method, b" ", url, b" HTTP/1.1\r\n"]
    xff = b""
    host = b""
    request_id = b""
    proto = b""
    fhost = b""
    via = b""
    for i in range(len(lnames)):
        lname = lnames[i]
        if lname in drop:
            continue
        name, value = headers[i]
        if lname in FORWARDED:
            if trust:
                if lname == b"x-forwarded-for":
                    xff = value
                elif lname == b"x-forwarded-proto":
                    proto = value
                elif lname == b"x-forwarded-host":
                    fhost = value
                else:  # Forwarded, X-Forwarded-Port: a trusted front's, relayed as they are
                    out += (name, b": ", value, b"\r\n")
            continue
        if lname == rid_lower:
            if trust:
                request_id = value
            continue
        if lname == b"expect" and expect_continue:
            continue  # the proxy answers the expectation itself (RFC 9110 §10.1.1)
        if lname == b"via":
            via = value
            continue
        if lname == b"host":
            host = value
        out += (name, b": ", value, b"\r\n")
    if not host and host_fallback:
        # HTTP/1.0 clients may omit Host; our upstream request is HTTP/1.1, which needs one
        # (RFC 9112 §3.2), so name the backend, as nginx does with $proxy_host
        out += (b"Host: ", host_fallback, b"\r\n")
    out += (b"X-Forwarded-For: ", xff + b", " + client_ip if xff else client_ip, b"\r\n")
    # ``scheme``: b"https" when the client's connection is TLS (terminated here), else b"http"
    out += (b"X-Forwarded-Proto: ", proto or scheme, b"\r\n")
    out += (b"X-Forwarded-Host: ", fhost or host, b"\r\n")
    out += (rid_name, b": ", request_id or new_id(), b"\r\n")
    out += (b"Via: ", via + b", " + via_mine if via else via_mine, b"\r\n")
    if upgrade:
        for i in range(len(lnames)):
            if lnames[i] == b"upgrade":
                out += (b"Upgrade: ", headers[i][1], b"\r\n")
        out.append(b"Connection: upgrade\r\n")
    else:
        if chunked:
            out.append(b"Transfer-Encoding: chunked\r\n")
        out.append(b"Connection: keep-alive\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def relay_fields(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]], drop: frozenset[bytes]
) -> tuple[list[bytes], bool, bool, bytes, list[bytes]]:
    """One pass over a response's fields: the status line and the fields to relay (without
    ``drop`` and Via), whether a kept Content-Length or a Transfer-Encoding came, the Via
    value, and the Connection values."""
    out = [b"HTTP/1.1 %d " % status, reason, b"\r\n"]
    has_length = False
    chunked = False
    via = b""
    listed: list[bytes] = []
    for name, value in headers:
        lname = name.lower()
        if lname in drop:
            if lname == b"transfer-encoding":
                chunked = True
            elif lname == b"connection":
                listed.append(value)
            continue
        if lname == b"via":
            via = value
            continue
        if lname == b"content-length":
            has_length = True
        out += (name, b": ", value, b"\r\n")
    return out, has_length, chunked, via, listed


def response_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    via_mine: bytes,
    set_cookie: bytes,
    interim: bool,
    bodyless: bool,
    http10: bool,
    must_close: bool,
    keep_alive: bool,
) -> tuple[bytes, bool, bool, bool]:
    """The response head for the client and its framing: (head, until_close, rechunk, close).

    ``until_close``: the upstream body ends when the backend closes; ``rechunk``: send it to
    the client as chunks; ``close``: close the client connection after this response.
    """
    out, has_length, chunked, via, listed = relay_fields(status, reason, headers, HOP_BY_HOP)
    if listed:
        # RFC 9110 §7.6.1: fields the Connection header names are hop-by-hop too; the usual
        # "keep-alive"/"close" name nothing new, so this second pass is rare
        extra = connection_tokens(listed) - HOP_BY_HOP
        if extra:
            out, has_length, chunked, via, _ = relay_fields(
                status, reason, headers, HOP_BY_HOP | extra
            )
    out += (b"Via: ", via + b", " + via_mine if via else via_mine, b"\r\n")
    if interim:
        if status == 101:
            for name, value in headers:
                if name.lower() == b"upgrade":
                    out += (b"Upgrade: ", value, b"\r\n")
            out.append(b"Connection: upgrade\r\n")
            # a client that opens a WebSocket first (no page load) gets its pin here, as
            # HAProxy's `cookie insert` does; a repin's new cookie too
            if set_cookie:
                out += (b"Set-Cookie: ", set_cookie, b"\r\n")
        out.append(b"\r\n")
        return b"".join(out), False, False, False
    if set_cookie:
        out += (b"Set-Cookie: ", set_cookie, b"\r\n")
    # RFC 9112 §6.3: neither length nor chunked: the body ends when the backend closes
    until_close = not bodyless and not has_length and not chunked
    rechunk = False
    close = must_close
    if not bodyless and not has_length:
        # chunked or close-delimited upstream: re-frame as chunks for an HTTP/1.1 client,
        # or delimit by closing for HTTP/1.0
        if not http10:
            rechunk = True
            out.append(b"Transfer-Encoding: chunked\r\n")
        else:
            close = True
    if close or not keep_alive:
        out.append(b"Connection: close\r\n")
    elif http10:
        out.append(b"Connection: keep-alive\r\n")
    out.append(b"\r\n")
    return b"".join(out), until_close, rechunk, close
