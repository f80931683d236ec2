"""SANS-IO: AffinitySpec, the one plain description of an affinity rule.

The proxy's config, the ``--affinity`` flag and the Kubernetes dialects (GKE, ingress-nginx,
Traefik, Alibaba, Service sessionAffinity) all produce this value; policies are built from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, cast

from limpet.errors import UsageError

Mode = Literal["none", "cookie", "client-ip", "hash", "engineio"]
HashSource = Literal["header", "cookie", "query"]
CookieMode = Literal["persistent", "balanced"]
SameSite = Literal["Lax", "Strict", "None"]
Balance = Literal[
    "round-robin", "least-connections", "power-of-two", "least-sessions", "power-of-two-sessions"
]

MODES: tuple[Mode, ...] = ("none", "cookie", "client-ip", "hash", "engineio")
#: Kubernetes' default for Service sessionAffinityConfig.clientIP.timeoutSeconds (and its maximum).
CLIENT_IP_TIMEOUT_DEFAULT = 10800
CLIENT_IP_TIMEOUT_MAX = 86400


@dataclass(frozen=True, slots=True)
class AffinitySpec:
    mode: Mode = "cookie"
    # cookie mode
    cookie_name: str = "limpet"
    cookie_ttl: int | None = None  # seconds; None -> a session cookie
    cookie_path: str = "/"
    cookie_domain: str | None = None
    cookie_secure: bool = False
    cookie_httponly: bool = True
    cookie_samesite: SameSite | None = "Lax"
    cookie_mode: CookieMode = "persistent"  # ingress-nginx affinity-mode
    # client-ip mode
    client_ip_timeout: int = CLIENT_IP_TIMEOUT_DEFAULT
    # hash mode
    hash_source: HashSource | None = None
    hash_key: str | None = None
    # bounded load in percent of the mean (as HAProxy hash-balance-factor); 0 = off
    hash_balance_factor: int = 0
    # engineio mode
    engineio_path: str = "/socket.io/"
    # how a fresh session (or mode none) picks among eligible backends; None: the mode's
    # default (``balancer``)
    balance: Balance | None = None

    @classmethod
    def from_flag(
        cls, text: str, base: AffinitySpec | None = None, *, label: str = "--affinity"
    ) -> AffinitySpec:
        """Parse the ``--affinity`` flag: none|cookie|client-ip|engineio|hash:header:H|...
        (``label`` names where the value came from in an error: the flag, or a file's key)."""
        base = base or cls()
        if text.startswith("hash:"):
            parts = text.split(":", 2)
            if len(parts) != 3 or parts[1] not in ("header", "cookie", "query") or not parts[2]:
                raise UsageError(
                    f"{label} {text!r}: expected hash:header:NAME, hash:cookie:NAME "
                    "or hash:query:NAME"
                )
            source = cast(HashSource, parts[1])
            return replace(base, mode="hash", hash_source=source, hash_key=parts[2])
        if text not in MODES or text == "hash":
            raise UsageError(
                f"{label} {text!r}: expected one of none, cookie, client-ip, engineio, "
                "hash:header:H, hash:cookie:C, hash:query:Q"
            )
        mode = cast(Mode, text)
        return replace(base, mode=mode)

    @property
    def balancer(self) -> Balance:
        """The balance in force: as set, else least sessions for ``engineio`` (its sessions are
        long-lived, so where they are is the load) and round robin for the others."""
        if self.balance is not None:
            return self.balance
        return "least-sessions" if self.mode == "engineio" else "round-robin"

    def flag(self) -> str:
        """The ``--affinity`` value that produces this mode."""
        if self.mode == "hash":
            return f"hash:{self.hash_source}:{self.hash_key}"
        return self.mode
