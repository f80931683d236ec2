"""Header rules for forwarding: hop-by-hop removal, X-Forwarded-*, Via, request id, cookies."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

# the hop-by-hop rules live in the wire core, which the head rewriting uses
from limpet.proxy.wire.rewrite import FORWARDED, HOP_BY_HOP, connection_tokens

__all__ = ["FORWARDED", "HOP_BY_HOP", "connection_tokens", "new_request_id", "parse_cookies"]


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


_ID_PREFIX = os.urandom(6).hex().encode() + b"-"  # (hex and "-": no "%" for the format below)

#: A unique request id: a random per-process prefix and a counter, ``prefix-<hex counter>``
#: (no syscall per request, unlike os.urandom, which showed up in the profile). Built from
#: builtins alone (``map`` over ``itertools.count``, formatted by ``bytes.__mod__``), so a
#: call runs no Python frame: it is made once per forwarded request.
new_request_id: Callable[[], bytes] = map((_ID_PREFIX + b"%x").__mod__, itertools.count(1)).__next__
