"""SANS-IO: affinity ``cookie``: the proxy hands out a signed cookie that names the pin.

The cookie value is a ``tokens`` token (HMAC-SHA256, see tokens.py) whose 16-byte body is::

    pin (8) = HMAC(secret, "pin" | pool | backend id)[:8]    session key (8, random)

The pin is a keyed hash, never an address or id: the policy maps it back through a table it
builds from each new snapshot (pin -> backend), so a client cannot name a backend, and a
token can only lead to a backend of the current snapshot that may serve it. Two proxy
processes with the same secret and pool name build the same table and decide the same way;
nothing is stored.

Modes (ingress-nginx ``affinity-mode``):

- ``persistent``: stay on the pin while it serves (HEALTHY or DRAINING). New sessions are
  placed by the balancer (round robin / least connections).
- ``balanced``: the session key is placed by Maglev over the HEALTHY backends; a session
  stays on its pin while the key still maps there, or while its pin is DRAINING, and is moved
  (REPINNED, new cookie, same key) when the key maps elsewhere: after a scale-up about 1/N of
  the sessions move to the new backends, which is ingress-nginx's "redistributes some
  sessions if a deployment gets scaled up". New sessions draw a random key.

Both modes: a pin that is EJECTED or gone, or a cookie that is malformed, tampered with,
signed with another secret or pool, or expired, is treated as no pin: the request is placed
afresh with a new Set-Cookie in the same Pick (reason REPINNED). A bad cookie never raises.

``cookie_ttl`` sets both Max-Age and the token's own expiry (``facts.now`` + TTL, so use
wall-clock time); ``None`` or ``0`` (GKE's affinityCookieTtlSec: 0) make a session cookie with
a token that never expires. No ``Expires`` attribute: Max-Age wins in every current browser
(RFC 6265 section 5.3 step 3) and would need the wall clock formatted per response.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable

from limpet.affinity.base import Pick, PickReason, RequestFacts
from limpet.affinity.hashing import MaglevCache
from limpet.affinity.spec import AffinitySpec
from limpet.affinity.tokens import TokenCodec
from limpet.balancing.base import Balancer
from limpet.errors import TokenError, UsageError
from limpet.pool.model import BackendState, BackendView, PoolSnapshot

PIN_SIZE = 8
KEY_SIZE = 8
BODY_SIZE = PIN_SIZE + KEY_SIZE
#: verified tokens remembered per snapshot (the HMAC is checked once per distinct token)
OPENED_CACHE = 4096
# RFC 6265 section 4.1.1: cookie-name is an RFC 2616 token
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_ATTR_VALUE = re.compile(r"^[\x21-\x3a\x3c-\x7e]+$")  # printable, no ';' nor space


def cookie_attributes(spec: AffinitySpec) -> str:
    """The ``; Path=...; ...`` suffix of every Set-Cookie, validated once."""
    if not _TOKEN.match(spec.cookie_name):
        raise UsageError(f"cookie name {spec.cookie_name!r} is not a valid RFC 6265 cookie name")
    parts = []
    for label, value in (("Path", spec.cookie_path), ("Domain", spec.cookie_domain)):
        if value is None:
            continue
        if not _ATTR_VALUE.match(value):
            raise UsageError(
                f"cookie {label.lower()} {value!r} may not contain ';', spaces or controls"
            )
        parts.append(f"{label}={value}")
    ttl = spec.cookie_ttl
    if ttl is not None and ttl < 0:
        raise UsageError(f"cookie TTL {ttl} must be >= 0 seconds (0 or unset: session cookie)")
    if ttl:
        parts.append(f"Max-Age={ttl}")
    if spec.cookie_samesite == "None" and not spec.cookie_secure:
        raise UsageError("cookie SameSite=None needs Secure (browsers drop it otherwise)")
    if spec.cookie_secure:
        parts.append("Secure")
    if spec.cookie_httponly:
        parts.append("HttpOnly")
    if spec.cookie_samesite is not None:
        parts.append(f"SameSite={spec.cookie_samesite}")
    return "".join(f"; {p}" for p in parts)


class CookiePolicy:
    name = "cookie"

    def __init__(
        self,
        spec: AffinitySpec,
        *,
        secret: bytes,
        pool_name: str,
        balancer: Balancer,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not secret:
            raise UsageError(
                "cookie affinity needs a secret (the same on every proxy process) to sign cookies"
            )
        self.spec = spec
        self.cookie_name = spec.cookie_name
        self.mode = spec.cookie_mode
        self.balancer = balancer
        self._attributes = cookie_attributes(spec)
        self._ttl = spec.cookie_ttl or None
        self._entropy = entropy
        self._pin_context = b"limpet-pin\0" + pool_name.encode() + b"\0"
        self._secret = secret
        self._codec = TokenCodec(secret, b"limpet-cookie\0" + pool_name.encode())
        self._pins: dict[str, bytes] = {}  # backend id -> pin hash
        self._by_pin: dict[bytes, str] = {}  # pin hash -> backend id
        self._for: PoolSnapshot | None = None
        self._opened_tokens: dict[str, tuple[int, BackendView | None, bytes]] = {}
        self._pinned: dict[str, Pick] = {}  # backend id -> Pick(it, PINNED), per snapshot
        #: persistent mode: token -> (expiry, its PINNED Pick) when the pin serves, per snapshot
        self._sticky: dict[str, tuple[int, Pick]] = {}
        self._maglev = MaglevCache()

    def __repr__(self) -> str:
        return f"CookiePolicy(cookie={self.cookie_name!r}, mode={self.mode!r})"

    # -- tokens --------------------------------------------------------------------------------

    def pin_hash(self, backend_id: str) -> bytes:
        pin = self._pins.get(backend_id)
        if pin is None:
            pin = hmac.digest(self._secret, self._pin_context + backend_id.encode(), "sha256")
            pin = pin[:PIN_SIZE]
            self._pins[backend_id] = pin
        return pin

    def token(self, backend_id: str, key: bytes, now: float) -> str:
        expires = now + self._ttl if self._ttl else None
        return self._codec.seal(self.pin_hash(backend_id) + key, expires=expires)

    def set_cookie(self, backend_id: str, key: bytes, now: float) -> str:
        return f"{self.cookie_name}={self.token(backend_id, key, now)}{self._attributes}"

    def read(
        self, facts: RequestFacts, pool: PoolSnapshot
    ) -> tuple[BackendView | None, bytes | None]:
        """(pin, session key) from the request's cookie; (None, None) when absent or invalid."""
        text = facts.cookies.get(self.cookie_name)
        if text is None:
            return None, None
        known = self._opened(text, pool)
        if known is None:
            return None, None
        stamp, pin, key = known
        if stamp and facts.now >= stamp:
            return None, None  # expired: as if absent (TokenCodec.open says the same)
        return pin, key

    def _opened(
        self, text: str, pool: PoolSnapshot
    ) -> tuple[int, BackendView | None, bytes] | None:
        """(expiry, pin in ``pool``, session key) of a token that verified, else None.

        Remembered per distinct token for as long as the snapshot stands (bounded by
        OPENED_CACHE), so a session's every request after its first is one dict lookup: no
        base64, no HMAC, no pin table. Only tokens that verified enter it (a tampered text
        is a different key and goes through the codec again, and is refused there).
        """
        if pool is not self._for:
            self._refresh(pool)
        opened = self._opened_tokens
        known = opened.get(text)
        if known is None:
            try:
                stamp, body = self._codec.verified(text, BODY_SIZE)
            except TokenError:
                return None
            backend_id = self._by_pin.get(body[:PIN_SIZE])
            pin = pool.get(backend_id) if backend_id is not None else None
            known = (stamp, pin, body[PIN_SIZE:])
            if len(opened) >= OPENED_CACHE:
                opened.clear()  # bounded; refilled by the sessions still active
                self._sticky.clear()
            opened[text] = known
            if pin is not None and pin.serves_pinned and self.mode != "balanced":
                self._sticky[text] = (stamp, self._pinned[pin.id])
        return known

    def _refresh(self, pool: PoolSnapshot) -> None:
        if pool is self._for:
            return
        if len(self._pins) > 4 * len(pool.backends) + 64:
            self._pins = {}  # forget ids of long-gone backends
        self._by_pin = {self.pin_hash(b.id): b.id for b in pool.backends}
        # what a token leads to depends on the snapshot (its backends and their states)
        self._opened_tokens = {}
        self._pinned = {b.id: Pick(b, PickReason.PINNED) for b in pool.backends}
        self._sticky = {}
        self._for = pool

    # -- decision ------------------------------------------------------------------------------

    def pick(self, facts: RequestFacts, pool: PoolSnapshot) -> Pick:
        text = facts.cookies.get(self.cookie_name)
        if text is not None and pool is self._for:
            # a session's every request after its first (persistent mode): the answer the
            # steps below give, remembered with the verified token for this snapshot
            hit = self._sticky.get(text)
            if hit is not None and (not hit[0] or facts.now < hit[0]):
                return hit[1]
        had_cookie = text is not None
        pin, key = self.read(facts, pool)
        if self.mode == "balanced":
            return self._pick_balanced(facts, pool, pin, key, had_cookie)
        if pin is not None and pin.serves_pinned:
            return self._pinned[pin.id]  # (one frozen Pick per backend and snapshot)
        backend = self.balancer.choose(pool.eligible(), pool)
        if backend is None:
            return Pick(None, PickReason.NO_BACKEND)
        reason = PickReason.REPINNED if had_cookie else PickReason.NEW
        return Pick(
            backend, reason, self.set_cookie(backend.id, self._entropy(KEY_SIZE), facts.now)
        )

    def _pick_balanced(
        self,
        facts: RequestFacts,
        pool: PoolSnapshot,
        pin: BackendView | None,
        key: bytes | None,
        had_cookie: bool,
    ) -> Pick:
        if pin is not None and pin.state is BackendState.DRAINING:
            return Pick(pin, PickReason.PINNED)  # a drain keeps the sessions it has
        table = self._maglev.eligible(pool)
        if key is None:
            key = self._entropy(KEY_SIZE)
        target_id = table.lookup(key)
        target = pool.get(target_id) if target_id is not None else None
        if target is None:
            return Pick(None, PickReason.NO_BACKEND)
        if pin is not None and pin.id == target.id:
            return Pick(pin, PickReason.PINNED)
        reason = PickReason.REPINNED if had_cookie else PickReason.NEW
        return Pick(target, reason, self.set_cookie(target.id, key, facts.now))
