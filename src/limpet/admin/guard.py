"""SANS-IO: who may do what on the admin listener, as one pure decision per request.

- Reading (GET/HEAD: /metrics, /healthz, /readyz, /status, the dashboard) needs no token, so
  Prometheus and kubelet probes keep working unchanged.
- Every mutating call (any other method) needs ``Authorization: Bearer <token>``; without a
  configured token nothing may be mutated (refused with a message saying how to set one).
- A browser request from another origin is refused whatever its method or credentials: a page on
  ``http://evil.example`` can POST ``text/plain`` to a loopback admin without a preflight
  (a "simple" CORS request), so the origin is checked, not only the token. Browsers send
  ``Origin`` on every cross-origin POST and ``Sec-Fetch-Site`` on every request (Fetch Metadata).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the status to answer and a one-line reason."""

    status: int
    reason: str


def same_origin(origin: str, host: str) -> bool:
    """``Origin: scheme://host[:port]`` names the admin itself (the ``Host`` it was reached at)."""
    scheme, sep, rest = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and rest.lower() == host.lower()


def check(method: str, headers: Mapping[str, str], token: str | None) -> Refusal | None:
    """None when the request may proceed, else the refusal (pure: no I/O, no clock)."""
    origin = headers.get("Origin")
    host = headers.get("Host", "")
    if origin is not None and not same_origin(origin, host):
        return Refusal(403, f"cross-origin request refused (Origin {origin!r})")
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return Refusal(403, f"cross-site request refused (Sec-Fetch-Site {site!r})")
    if method.upper() in READ_METHODS:
        return None
    if not token:
        return Refusal(
            403,
            "mutating admin calls need a token: set LIMPET_ADMIN_TOKEN or --admin-token-file",
        )
    scheme, _, given = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return Refusal(401, "missing bearer token (Authorization: Bearer TOKEN)")
    # constant time: the comparison must not tell an attacker how much of the token matched
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return Refusal(401, "wrong bearer token")
    return None
