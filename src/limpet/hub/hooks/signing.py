"""The signature on every hook and event request: HMAC-SHA256 over ``"<timestamp>." + body``.

The scheme is Stripe's webhook signature (``t`` and ``v1``) in two headers: the timestamp is
signed with the body, so a captured request cannot be replayed after ``tolerance`` seconds, and
the body cannot be changed without the secret. The receiver compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from limpet.errors import LimpetError

TIMESTAMP_HEADER = "X-Limpet-Timestamp"
SIGNATURE_HEADER = "X-Limpet-Signature"
#: seconds a signed request stays acceptable (either side of the receiver's clock)
TOLERANCE = 300


class SignatureError(LimpetError):
    """A request's signature is missing, malformed, stale or wrong."""


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(secret: bytes | None, body: bytes, now: float) -> dict[str, str]:
    """The headers that sign ``body`` at ``now`` (none without a secret)."""
    if secret is None:
        return {}
    timestamp = int(now)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, body, timestamp),
    }


def verify(
    secret: bytes,
    body: bytes,
    headers: Mapping[str, str],
    now: float,
    *,
    tolerance: float = TOLERANCE,
) -> None:
    """Raise SignatureError unless ``headers`` sign ``body`` with ``secret`` within
    ``tolerance`` seconds of ``now``. For the application's side (the example app uses it)."""
    stamp = headers.get(TIMESTAMP_HEADER)
    given = headers.get(SIGNATURE_HEADER)
    if not stamp or not given:
        raise SignatureError(f"unsigned request: {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} needed")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise SignatureError(f"{TIMESTAMP_HEADER} must be whole seconds since the epoch")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"stale request: signed {int(now - timestamp)} s from now")
    expected = signature(secret, body, timestamp)
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise SignatureError("bad signature")
