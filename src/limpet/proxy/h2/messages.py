"""SANS-IO: one stream's request fields as the HTTP/1.1 head a backend gets, and a backend's
response head as the HTTP/2 fields a client gets.

Request (RFC 9113 §8.3.1, §8.2): pseudo-header fields come first, once each, and only those a
request may carry; names are lower case; connection-specific fields (Connection, Keep-Alive,
Proxy-Connection, Transfer-Encoding, Upgrade) and any TE but ``trailers`` make the request
malformed (§8.2.2). A malformed request is a stream error (§8.1.1): ``Malformed`` says why, the
stream is reset, the connection lives on. ``:authority`` becomes Host (a Host that names
another authority is malformed, §8.3.1); the Cookie crumbs a client may split (§8.2.3) are
joined with "; " into one field, as an HTTP/1.1 backend expects. Extended CONNECT with
``:protocol websocket`` (RFC 8441 §4) becomes a GET with ``Upgrade: websocket`` and a fresh
Sec-WebSocket-Key (§5: an HTTP/2 client sends none).
Response (RFC 9113 §8.2.2): the same connection-specific fields, and any field Connection
names, are dropped; names are lowered; each Set-Cookie stays its own field (§8.2.3 joins only
Cookie).
Trailers, both ways (RFC 9113 §8.1, RFC 9110 §6.5): a client's are checked as its request
fields are (a pseudo-header or a connection-specific field makes the request malformed) and
become the lines of an HTTP/1.1 trailer section; a backend's become lower-case HTTP/2 fields.
Either way the fields RFC 9110 §6.5.1 keeps out of trailers (``FORBIDDEN_TRAILERS``) are
dropped, not relayed.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass

CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
#: fields a trailer section may not carry: RFC 9110 §6.5.1 keeps out of trailers what must be
#: known before the content (framing, routing, request modifiers, authentication, response
#: control, content format). The names are Go net/http's list (badTrailer), with Set-Cookie
#: (a response control: the affinity cookie is decided from the head) and the
#: connection-specific fields
FORBIDDEN_TRAILERS = CONNECTION_SPECIFIC | frozenset(
    {
        b"authorization",
        b"cache-control",
        b"content-encoding",
        b"content-length",
        b"content-range",
        b"content-type",
        b"expect",
        b"host",
        b"max-forwards",
        b"pragma",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"range",
        b"realm",
        b"set-cookie",
        b"te",
        b"trailer",
        b"www-authenticate",
    }
)
REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
#: the response fields a 101 to a WebSocket upgrade carries that mean nothing on a stream
WEBSOCKET_HANDSHAKE = frozenset({b"sec-websocket-accept"})
_BAD_VALUE_RE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
#: a lower-case token (RFC 9110 §5.6.2); upper case in an HTTP/2 name is malformed (§8.2.1)
_BAD_NAME_RE = re.compile(rb"[^a-z0-9!#$%&'*+\-.^_`|~]")


class Malformed(Exception):
    """A request RFC 9113 §8.1.1 calls malformed: the stream is reset with PROTOCOL_ERROR."""


class Unsupported(Exception):
    """A well-formed request this proxy does not serve (a classic CONNECT): answered locally."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class Request:
    """A stream's request, ready for an ``Exchange``: fields in HTTP/1.1 form, Host first."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    lnames: list[bytes]
    websocket: bool  # extended CONNECT with :protocol websocket
    content_length: int | None

    @property
    def expect_continue(self) -> bool:
        """``expect: 100-continue`` (RFC 9110 §10.1.1): the client waits for a 100 before
        its body; the proxy answers it, as for HTTP/1.1, and the backend never sees it."""
        lnames = self.lnames
        if b"expect" not in lnames:
            return False
        headers = self.headers
        return any(
            lnames[i] == b"expect" and headers[i][1].lower() == b"100-continue"
            for i in range(len(lnames))
        )

    @property
    def chunked(self) -> bool:
        """The body goes upstream chunked: it has no Content-Length (HTTP/2 frames it)."""
        return self.content_length is None


#: the values of a header block joined by LF: a NUL or CR anywhere, or whitespace at either end
#: of a value, is found in one search (an LF inside a value shows in the count of LFs)
_SUSPECT_VALUES_RE = re.compile(rb"[\x00\r]|^[ \t]|[ \t]$", re.M)
#: the names joined by LF: anything but a lower-case token, a colon that does not start a
#: name (a pseudo-header's), or an empty name
_SUSPECT_NAMES_RE = re.compile(rb"[^a-z0-9!#$%&'*+\-.^_`|~\n:]|[^\n]:|^$", re.M)


def suspect(fields: list[tuple[bytes, bytes]]) -> bool:
    """Whether any field of a header block may break RFC 9113 §8.2.1 (a bad value or name),
    in two searches over the whole block instead of two per field; only a block this flags is
    checked field by field (to say which one, and why)."""
    if not fields:
        return False
    values = b"\n".join([v for _, v in fields])
    if values.count(b"\n") != len(fields) - 1 or _SUSPECT_VALUES_RE.search(values) is not None:
        return True
    return _SUSPECT_NAMES_RE.search(b"\n".join([n for n, _ in fields])) is not None


def bad_value(value: bytes) -> bool:
    """RFC 9113 §8.2.1: NUL, CR, LF anywhere, or whitespace at either end, is malformed."""
    return _BAD_VALUE_RE.search(value) is not None


def websocket_key() -> bytes:
    """A fresh Sec-WebSocket-Key (RFC 6455 §4.1: 16 random bytes, base64)."""
    return base64.b64encode(os.urandom(16))


def request(fields: list[tuple[bytes, bytes]], *, connect_protocol: bool = True) -> Request:
    """The request of one HEADERS block (``fields`` as HPACK decoded them, bytes)."""
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    host: bytes | None = None
    content_length: int | None = None
    regular = False
    check = suspect(fields)
    for name, value in fields:
        if check and bad_value(value):
            raise Malformed(f"field {name.decode('latin-1')!r} has a forbidden character")
        if name[:1] == b":":
            if regular:
                raise Malformed("a pseudo-header field after a regular field")
            if name not in REQUEST_PSEUDO:
                raise Malformed(f"pseudo-header field {name.decode('latin-1')!r} in a request")
            if name in pseudo:
                raise Malformed(f"{name.decode('latin-1')} repeated")
            pseudo[name] = value
            continue
        regular = True
        if check and (not name or _BAD_NAME_RE.search(name) is not None):
            raise Malformed(f"field name {name.decode('latin-1')!r} is not a lower-case token")
        if name in CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific field {name.decode('latin-1')!r}")
        if name == b"te":
            if value.strip().lower() != b"trailers":
                raise Malformed("TE other than 'trailers'")
            continue  # a backend hop does not carry it (it is hop-by-hop in HTTP/1.1)
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"host":
            if host is not None:
                raise Malformed("host repeated")
            host = value
            continue
        if name == b"content-length":
            if not value.isdigit() or (content_length is not None and int(value) != content_length):
                raise Malformed("a bad content-length")
            if content_length is not None:
                continue
            content_length = int(value)
        headers.append((name, value))
    method = pseudo.get(b":method")
    if method is None:
        raise Malformed(":method missing")
    protocol = pseudo.get(b":protocol")
    authority = pseudo.get(b":authority")
    if method == b"CONNECT" and protocol is None:
        if b":scheme" in pseudo or b":path" in pseudo or authority is None:
            raise Malformed("CONNECT with :scheme or :path, or without :authority")
        raise Unsupported(501, "CONNECT tunnels are not served here")
    if protocol is not None:
        # RFC 8441 §4: only on CONNECT, and only when we advertised the setting
        if method != b"CONNECT" or not connect_protocol:
            raise Malformed(":protocol without extended CONNECT")
        if protocol.lower() != b"websocket":
            raise Unsupported(501, f"protocol {protocol.decode('latin-1')!r} is not served here")
    path = pseudo.get(b":path")
    if not path or b":scheme" not in pseudo:
        raise Malformed(":path or :scheme missing")
    if not path.startswith(b"/") and not (path == b"*" and method == b"OPTIONS"):
        raise Malformed(":path is neither a path nor '*'")
    if authority is not None:
        if host is not None and host.lower() != authority.lower():
            raise Malformed("host names another authority than :authority")
        host = authority
    out = [(b"host", host)] if host is not None else []
    out += headers
    if cookies:
        out.append((b"cookie", b"; ".join(cookies)))
    websocket = protocol is not None
    if websocket:
        method = b"GET"
        out += [(b"upgrade", b"websocket"), (b"sec-websocket-key", websocket_key())]
    return Request(method, path, out, [n for n, _ in out], websocket, content_length)


def response_fields(
    status: int, headers: list[tuple[bytes, bytes]], *, websocket: bool = False
) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 fields of a response head (``:status`` first); a WebSocket's 101 is 200."""
    drop = CONNECTION_SPECIFIC
    listed = [v for n, v in headers if n.lower() == b"connection"]
    if listed:
        drop = drop | {t.strip().lower() for v in listed for t in v.split(b",") if t.strip()}
    if websocket:
        drop = drop | WEBSOCKET_HANDSHAKE
        status = 200 if status == 101 else status
    out = [(b":status", b"%d" % status)]
    for name, value in headers:
        lname = name.lower()
        if lname not in drop:
            out.append((lname, value))
    return out


def request_trailers(fields: list[tuple[bytes, bytes]], max_fields: int) -> bytes:
    """A client's trailer fields (the HEADERS block after its DATA) as the lines of an
    HTTP/1.1 trailer section (RFC 9112 §7.1.2), each ending in CRLF; the forbidden dropped."""
    if len(fields) > max_fields:
        # limits.max-headers, as for the request's head
        raise Unsupported(431, "too many trailer fields")
    lines: list[bytes] = []
    for name, value in fields:
        if name[:1] == b":":
            raise Malformed("a pseudo-header field in trailers")  # RFC 9113 §8.1
        if not name or _BAD_NAME_RE.search(name) is not None:
            raise Malformed(f"field name {name.decode('latin-1')!r} is not a lower-case token")
        if bad_value(value):
            raise Malformed(f"field {name.decode('latin-1')!r} has a forbidden character")
        if name in CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific field {name.decode('latin-1')!r}")
        if name not in FORBIDDEN_TRAILERS:
            lines += (name, b": ", value, b"\r\n")
    return b"".join(lines)


def response_trailers(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A backend's trailer fields (validated by the response parser) as HTTP/2 trailers."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in fields:
        lname = name.lower()
        if lname not in FORBIDDEN_TRAILERS:
            out.append((lname, value))
    return out
