"""Header rules for forwarding: hop-by-hop removal, X-Forwarded-*, Via, request id, cookies."""

from __future__ import annotations

import itertools
import os

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
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})


def connection_tokens(values: list[bytes]) -> set[bytes]:
    """The field names listed in Connection (RFC 9110 §7.6.1): also hop-by-hop."""
    out: set[bytes] = set()
    for v in values:
        for token in v.split(b","):
            token = token.strip().lower()
            if token:
                out.add(token)
    return out


def parse_cookies(values: list[str]) -> dict[str, str]:
    """Cookie header(s) -> {name: value}; the first occurrence of a name wins (RFC 6265 §5.4).

    Hand-written because http.cookies.SimpleCookie rejects whole headers over one odd cookie,
    and a proxy must not lose the affinity cookie because a neighbour is malformed.
    """
    jar: dict[str, str] = {}
    for header in values:
        for part in header.split(";"):
            name, sep, value = part.partition("=")
            if not sep:
                continue
            name = name.strip()
            if name and name not in jar:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                jar[name] = value
    return jar


_ID_PREFIX = os.urandom(6).hex().encode() + b"-"
_id_counter = itertools.count(1)


def new_request_id() -> bytes:
    """A unique request id: a random per-process prefix and a counter (no syscall per request,
    unlike os.urandom, which showed up in the profile)."""
    return _ID_PREFIX + b"%x" % next(_id_counter)
