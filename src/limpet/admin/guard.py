"""SANS-IO: who may do what on the admin listener, as one pure decision per request.

- Reading (GET/HEAD: /metrics, /healthz, /readyz, /status, the dashboard) needs no token, so
  Prometheus and kubelet probes keep working unchanged.
- Every mutating call (any other method) needs ``Authorization: Bearer <token>``; without a
  configured token nothing may be mutated (refused with a message saying how to set one).
- A browser request from another origin is refused whatever its method or credentials: a page on
  ``http://evil.example`` can POST ``text/plain`` to a loopback admin without a preflight
  (a "simple" CORS request), so the origin is checked, not only the token. Browsers send
  ``Origin`` on every cross-origin POST and ``Sec-Fetch-Site`` on every request (Fetch Metadata).
- A request whose ``Host`` is a name the admin was not given is refused (421), so a page of an
  attacker's name that re-resolves to 127.0.0.1 (DNS rebinding) cannot read ``/status`` as a
  same-origin request. Answered: IP addresses (a rebinding page is reached by its name, never by
  an address; kubelet probes send the pod's IP), ``localhost`` and ``*.localhost`` (RFC 6761),
  and the names configured (``admin-hosts``, the admin's own bind name), as webpack-dev-server's
  ``allowedHosts: "auto"`` and Jupyter's ``allow_remote_access`` decide.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Collection, Mapping
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


def host_name(host: str) -> str:
    """The name part of a ``Host`` value: no port, no brackets, lower case, no final dot."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower() if "]" in host else host.lower()
    return host.rpartition(":")[0].lower().rstrip(".") if ":" in host else host.lower().rstrip(".")


def host_allowed(host: str, names: Collection[str] = ()) -> bool:
    """Whether the admin answers a request sent to ``Host: host`` (see the module's notes)."""
    name = host_name(host)
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return name == "localhost" or name.endswith(".localhost") or name in names


def check(
    method: str,
    headers: Mapping[str, str],
    token: str | None,
    hosts: Collection[str] = (),
) -> Refusal | None:
    """None when the request may proceed, else the refusal (pure: no I/O, no clock).
    ``hosts``: the names answered besides IP addresses and localhost."""
    origin = headers.get("Origin")
    host = headers.get("Host", "")
    if host and not host_allowed(host, hosts):
        return Refusal(
            421,
            f"this admin does not answer to Host {host!r} (add it to admin-hosts in the config)",
        )
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
    # surrogateescape: a header's undecodable bytes arrive as lone surrogates, which plain
    # encode() refuses (a 500 from client input); they are simply a wrong token
    given_bytes = given.strip().encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given_bytes, token.encode("utf-8", "surrogateescape")):
        return Refusal(401, "wrong bearer token")
    return None
