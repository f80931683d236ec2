"""SANS-IO: opaque, signed, optionally expiring tokens (cookie values, session ids).

Layout before encoding (hand-written because the stdlib has HMAC but no token format, and a
JWT would be ~4x longer and reveal its fields)::

    version (1) | expires (4, big-endian seconds; 0 = never) | body (n) | HMAC-SHA256 tag (16)

encoded as unpadded base64url. The tag covers the version, the expiry, the body and a *context*
(e.g. ``cookie\\0<pool>``) so a token minted for one purpose or pool is useless for another.
Decoding insists on the canonical encoding (re-encoding must give the same text), so every
change to the text, not only to the decoded bytes, is rejected. The tag is compared with
``hmac.compare_digest``.

``expires`` is compared with the caller's ``now``: for tokens to agree across processes the
callers must use wall-clock seconds (``time.time()``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import struct

from limpet.errors import TokenError

VERSION = 1
TAG_SIZE = 16  # 128-bit truncated HMAC-SHA256 (NIST SP 800-107 allows truncation to >= 64)
_HEAD = struct.Struct(">BI")
_MAX_EXPIRES = 0xFFFFFFFF


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        data = text.encode("ascii")
        raw = base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise TokenError("token is not base64url") from exc
    if _b64encode(raw) != text:
        raise TokenError("token is not canonically encoded")
    return raw


class TokenCodec:
    """Seal and open tokens with one secret in one context.

    Hot path: the HMAC state keyed with the secret and fed the context is computed once and
    copied per token (half the cost of ``hmac.digest``), and the last ``cache_size`` tokens
    that verified are remembered (text -> expiry, body), so a session's every request after
    its first costs a dict lookup. Only tokens that verified enter the cache, so it cannot be
    poisoned; expiry is still checked on every use.
    """

    __slots__ = ("_base", "_cache", "_cache_size")

    def __init__(self, secret: bytes, context: bytes, *, cache_size: int = 4096) -> None:
        if not secret:
            raise ValueError("a token secret must not be empty")
        self._base = hmac.new(secret, context + b"\0", hashlib.sha256)
        self._cache: dict[str, tuple[int, bytes]] = {}
        self._cache_size = cache_size

    def _tag(self, signed: bytes) -> bytes:
        mac = self._base.copy()
        mac.update(signed)
        return mac.digest()[:TAG_SIZE]

    def seal(self, body: bytes, *, expires: float | None = None) -> str:
        """Sign ``body``; ``expires`` (seconds, same clock as ``open``'s ``now``) or never."""
        stamp = 0 if expires is None else min(max(1, math.ceil(expires)), _MAX_EXPIRES)
        signed = _HEAD.pack(VERSION, stamp) + body
        return _b64encode(signed + self._tag(signed))

    def open(self, text: str, *, now: float, body_size: int | None = None) -> bytes:
        """Verify and return the body; raises TokenError if malformed, tampered or expired."""
        stamp, body = self.verified(text, body_size)
        if stamp and now >= stamp:
            raise TokenError("token has expired")
        return body

    def verified(self, text: str, body_size: int | None = None) -> tuple[int, bytes]:
        """(expiry stamp, body) of a token whose signature verifies; its expiry is the caller's
        to check (0: never). Raises TokenError if malformed, tampered or the wrong size."""
        known = self._cache.get(text)
        if known is not None:
            stamp, body = known
        else:
            stamp, body = self._verify(text)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # simple and bounded; refilled by the sessions still active
            self._cache[text] = (stamp, body)
        if body_size is not None and len(body) != body_size:
            raise TokenError("token body has the wrong size")
        return stamp, body

    def _verify(self, text: str) -> tuple[int, bytes]:
        raw = _b64decode(text)
        if len(raw) < _HEAD.size + TAG_SIZE:
            raise TokenError("token is too short")
        signed, tag = raw[:-TAG_SIZE], raw[-TAG_SIZE:]
        if not hmac.compare_digest(tag, self._tag(signed)):
            raise TokenError("token signature does not match")
        version, stamp = _HEAD.unpack_from(signed)
        if version != VERSION:
            raise TokenError(f"token version {version} is not supported")
        return stamp, signed[_HEAD.size :]
