"""SANS-IO: affinity ``client-ip`` with Kubernetes Service ``sessionAffinity: ClientIP`` semantics.

A client (by source address) stays on its backend until ``client_ip_timeout`` seconds pass with
no request from it (kube-proxy's default and maximum: 10800 and 86400 seconds); every request
refreshes the timer, as kube-proxy's ``recent`` match does for every new connection.

The first choice for an address is Maglev over the HEALTHY backends, a consistent hash of the
address, so proxy replicas that never talk to each other agree as long as they saw the same
pool when the client first came. A bounded LRU table (address -> backend, last seen; time from
``facts.now``) then keeps that pin while the pool changes (a backend joining does not move a
client that has one), until the timeout. A pin that is DRAINING keeps its clients; one that is
EJECTED or gone is replaced by the hash over what is healthy now (reason REPINNED).
"""

from __future__ import annotations

from collections import OrderedDict

from limpet.affinity.base import Pick, PickReason, RequestFacts
from limpet.affinity.hashing import MaglevCache
from limpet.affinity.spec import CLIENT_IP_TIMEOUT_MAX, AffinitySpec
from limpet.errors import UsageError
from limpet.pool.model import PoolSnapshot

MAX_ENTRIES = 100_000  # ~15 MB at most; the least recently seen client is forgotten first


def normalize_ip(ip: str) -> str:
    """One spelling per client: an IPv4-mapped IPv6 address is its IPv4 address."""
    if ip.startswith("::ffff:") and "." in ip:
        return ip[7:]
    return ip


class ClientIPPolicy:
    name = "client-ip"

    def __init__(self, spec: AffinitySpec, *, max_entries: int = MAX_ENTRIES) -> None:
        timeout = spec.client_ip_timeout
        if not 0 < timeout <= CLIENT_IP_TIMEOUT_MAX:
            raise UsageError(
                f"client-ip timeout {timeout} must be between 1 and {CLIENT_IP_TIMEOUT_MAX} "
                "seconds (as Kubernetes sessionAffinityConfig.clientIP.timeoutSeconds)"
            )
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.timeout = float(timeout)
        self.max_entries = max_entries
        self._pins: OrderedDict[str, tuple[str, float]] = OrderedDict()  # ip -> (id, last seen)
        self._maglev = MaglevCache()

    def __repr__(self) -> str:
        return f"ClientIPPolicy(timeout={self.timeout:g}, clients={len(self._pins)})"

    def __len__(self) -> int:
        return len(self._pins)

    def pick(self, facts: RequestFacts, pool: PoolSnapshot) -> Pick:
        ip = normalize_ip(facts.client_ip)
        now = facts.now
        had_pin = False
        entry = self._pins.get(ip)
        if entry is not None:
            backend_id, last_seen = entry
            if now - last_seen < self.timeout:
                had_pin = True
                pin = pool.get(backend_id)
                if pin is not None and pin.serves_pinned:
                    self._pins[ip] = (backend_id, now)
                    self._pins.move_to_end(ip)
                    return Pick(pin, PickReason.PINNED)
            del self._pins[ip]
        target_id = self._maglev.eligible(pool).lookup(ip.encode())
        target = pool.get(target_id) if target_id is not None else None
        if target is None:
            return Pick(None, PickReason.NO_BACKEND)
        self._remember(ip, target.id, now)
        return Pick(target, PickReason.REPINNED if had_pin else PickReason.NEW)

    def _remember(self, ip: str, backend_id: str, now: float) -> None:
        pins = self._pins
        pins[ip] = (backend_id, now)
        # Entries are in last-seen order: expired ones sit at the front.
        while pins:
            first_ip, (_, seen) = next(iter(pins.items()))
            if now - seen < self.timeout and len(pins) <= self.max_entries:
                break
            del pins[first_ip]
