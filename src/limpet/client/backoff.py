"""SANS-IO: when to try connecting again (the twin of ``DecorrelatedBackoff`` in
clients/js/limpet-client.js).

Decorrelated jitter, as AWS's architecture notes ("Exponential Backoff And Jitter") describe:
each delay is drawn uniformly between ``base`` and three times the previous one, capped. Clients
that lost the same replica at the same instant thus come back spread out instead of in waves,
and the spread widens while the failures go on. A hub that refused a client says when to come
back (HTTP 503 ``Retry-After``, WebSocket close 1013 "retry after N s"): the delay is then at
least that long, with jitter above it (up to half as long again) so that the clients refused in
one second do not all return in the same instant.

No clock and no sleeping here: the caller sleeps what ``next`` returns; the random source is a
parameter so the distribution can be tested.
"""

from __future__ import annotations

import random
import re

#: what a hub's close 1013 says (``"try again later: retry after 3 s"``)
_RETRY_AFTER_TEXT = re.compile(r"retry after (\d{1,6})")
#: the longest server-given wait honoured (a larger value is taken as this)
MAX_RETRY_AFTER = 300.0


class Backoff:
    """Delays between connection attempts: ``next()`` after each failure, ``reset()`` after a
    success."""

    __slots__ = ("_rng", "_sleep", "base", "cap")

    def __init__(self, base: float = 0.5, cap: float = 5.0, rng: random.Random | None = None):
        if not 0 < base <= cap:
            raise ValueError("0 < base <= cap is required")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()
        self._sleep = base

    def __repr__(self) -> str:
        return f"Backoff(base={self.base}, cap={self.cap}, last={self._sleep:.3f})"

    def first(self) -> float:
        """The wait before the first attempt after a connection was lost: uniform in
        [0, base] ("full jitter"), so the clients of a replica that died do not return at
        once, yet come back quickly."""
        self._sleep = self.base
        return self._rng.uniform(0, self.base)

    def next(self, retry_after: float | None = None) -> float:
        """The delay before the next attempt; ``retry_after``: what the hub asked for, if it did."""
        delay = min(self.cap, self._rng.uniform(self.base, max(self.base, self._sleep * 3)))
        if retry_after is not None and retry_after > 0:
            floor = min(retry_after, MAX_RETRY_AFTER)
            delay = max(delay, self._rng.uniform(floor, floor * 1.5))
        self._sleep = delay
        return delay

    def reset(self) -> None:
        self._sleep = self.base


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its delay-seconds form (RFC 9110 §10.2.3); None
    for anything else (an HTTP date is not worth a clock here: the jitter applies)."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 6:
        return None
    return float(value)


def retry_after_from_close(reason: str | None) -> float | None:
    """Seconds from the reason of a hub's close 1013 (``"... retry after N s"``), if given."""
    if not reason:
        return None
    match = _RETRY_AFTER_TEXT.search(reason)
    return float(match.group(1)) if match else None
