"""When to try a failed delivery again: capped exponential backoff, with jitter as a parameter
(so the schedule is testable), and the lease timings of the one delivering replica."""

from __future__ import annotations


def backoff(attempt: int, *, base: float = 0.1, cap: float = 2.0, jitter: float = 0.0) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): base·2^(attempt-1), at most ``cap``;
    ``jitter`` in [0, 1) shortens it by up to half (callers pass random.random())."""
    if attempt < 1:
        return 0.0
    delay = min(cap, base * float(2 ** min(attempt - 1, 30)))
    return delay * (1 - jitter / 2)
