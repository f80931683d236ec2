"""SANS-IO: admission control of new connections (Engine.IO handshakes) on a hub replica.

A reconnect storm (a replica died, a deploy restarted one) brings thousands of handshakes at
once. Served all together, each one's connect, subscribe and first frame waits behind all the
others, and clients give up at their connect timeout (20 s in the official socket.io client)
after the replica spent CPU on them. Admission bounds the handshakes *in flight*: an Engine.IO
handshake takes a ticket and gives it back once its socket.io connect is answered (or refused),
or after ``hold`` seconds (a handshake nobody followed up), whichever comes first. Past
``limit`` tickets the handshake is refused at once (HTTP 503 + ``Retry-After`` on polling, close
1013 on a WebSocket), which costs the replica next to nothing, and the client comes back later.
Clients subscribe right after they connect, so pacing the connects paces the subscribes too,
while a client that connects and subscribes later holds no place meanwhile.

``Retry-After`` spreads the refused: within one second, the first ``limit`` refusals are told 1
s, the next ``limit`` 2 s, and so on up to ``max_retry_after``, so the clients that come back
in any one second are about as many as the replica admits. Clients add their own jitter
(``limpet.client.backoff``).

Time is a parameter (``now``, in seconds, monotonic); nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ticket number -> its deadline; tickets are inserted with ``now + hold``, so the dict's order
#: is the order of the deadlines and expiry looks only at its front
_Tickets = dict[int, float]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused handshake: come back in ``retry_after`` seconds (a whole number, >= 1)."""

    retry_after: int


class Admission:
    """Handshakes in flight, bounded by ``limit`` (0: no bound, every handshake admitted)."""

    __slots__ = (
        "_bucket",
        "_bucket_refused",
        "_next",
        "_tickets",
        "admitted",
        "expired",
        "hold",
        "limit",
        "max_retry_after",
        "peak",
        "refused",
    )

    def __init__(self, limit: int, *, hold: float = 5.0, max_retry_after: int = 10) -> None:
        if limit < 0 or hold <= 0 or max_retry_after < 1:
            raise ValueError("limit >= 0, hold > 0 and max_retry_after >= 1 are required")
        self.limit = limit
        self.hold = hold
        self.max_retry_after = max_retry_after
        self._tickets: _Tickets = {}
        self._next = 0
        self._bucket = 0
        self._bucket_refused = 0
        #: totals since start (what /healthz and the dashboard show)
        self.admitted = 0
        self.refused = 0
        self.expired = 0
        #: the most handshakes in flight at once (with no limit too: what a limit would cut)
        self.peak = 0

    def __repr__(self) -> str:
        return (
            f"Admission(limit={self.limit}, in_flight={len(self._tickets)}, "
            f"admitted={self.admitted}, refused={self.refused}, expired={self.expired})"
        )

    @property
    def in_flight(self) -> int:
        return len(self._tickets)

    def admit(self, now: float) -> int | Refusal:
        """A new handshake: its ticket (give it back with ``done``), or a refusal."""
        self._expire(now)
        if self.limit and len(self._tickets) >= self.limit:
            second = int(now)
            if second != self._bucket:
                self._bucket, self._bucket_refused = second, 0
            wait = min(self.max_retry_after, 1 + self._bucket_refused // self.limit)
            self._bucket_refused += 1
            self.refused += 1
            return Refusal(wait)
        self._next += 1
        self._tickets[self._next] = now + self.hold
        self.admitted += 1
        self.peak = max(self.peak, len(self._tickets))
        return self._next

    def done(self, ticket: int) -> None:
        """The handshake is over (connected, refused, gone): its ticket is free. Idempotent."""
        self._tickets.pop(ticket, None)

    def _expire(self, now: float) -> None:
        tickets = self._tickets
        while tickets:
            ticket = next(iter(tickets))
            if tickets[ticket] > now:
                return
            del tickets[ticket]
            self.expired += 1

    def snapshot(self, now: float) -> dict[str, int]:
        """The counters, with the tickets past their deadline at ``now`` expired first."""
        self._expire(now)
        return {
            "limit": self.limit,
            "in_flight": len(self._tickets),
            "admitted": self.admitted,
            "refused": self.refused,
            "expired": self.expired,
            "peak": self.peak,
        }
