"""SANS-IO: the facts a policy reads, the decision it returns, and the policy interface."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple, Protocol

from limpet.pool.model import BackendView, PoolSnapshot

#: the empty mapping RequestFacts defaults to (shared, so it must not be mutable)
_EMPTY: Mapping[str, str] = MappingProxyType({})


class RequestFacts(NamedTuple):
    """What a policy may know about a request: nothing it would have to fetch itself.

    An immutable named tuple rather than a frozen dataclass: the proxy builds one per request,
    and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost ~1 µs of
    the ~35 µs of Python work per request (bench/proxy/hotpath.py); a tuple costs a quarter.
    """

    client_ip: str
    path: str = "/"
    query: str = ""  # raw query string, without '?'
    headers: Mapping[str, str] = _EMPTY  # lower-case names
    cookies: Mapping[str, str] = _EMPTY
    # seconds, from the caller's clock, used consistently. Cookie tokens with a TTL carry an
    # absolute expiry, so proxies that must agree on them pass wall-clock time (time.time()).
    now: float = 0.0


class PickReason(enum.Enum):
    NEW = "new"  # no pin yet: a fresh choice
    PINNED = "pinned"  # the session's pin is serving
    REPINNED = "repinned"  # the pin is gone/draining-for-new/invalid: moved, new token handed back
    HASHED = "hashed"  # consistent hash of a key
    REJECTED = "rejected"  # the token was tampered/unknown and the mode refuses to repin
    NO_BACKEND = "no-backend"  # nothing can serve: the caller answers 503


@dataclass(frozen=True, slots=True)
class Pick:
    """A decision: the backend (None -> 503), why, and the Set-Cookie value to add, if any."""

    backend: BackendView | None
    reason: PickReason
    set_cookie: str | None = None


class AffinityPolicy(Protocol):
    """A pure decision: same facts and snapshot in, same Pick out (given the policy's own state)."""

    name: str

    def pick(self, facts: RequestFacts, pool: PoolSnapshot) -> Pick: ...
