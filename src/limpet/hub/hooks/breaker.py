"""The hook breaker: stop calling an application that keeps failing, try again after a pause.

A state machine as a table (docs/hub.md prints it). ``threshold`` outages in a row open it; while
open, calls fail at once (as outages, so fail-closed / fail-open applies) without reaching the
application; after ``cooldown`` seconds one probe is let through (half-open): its success closes
the breaker, its failure opens it again. Time is a parameter.
"""

from __future__ import annotations

import enum


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class BreakerEvent(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"  # an outage below the threshold
    TRIP = "trip"  # the outage that reaches the threshold
    COOLED = "cooled"  # the cooldown has passed


TRANSITIONS: dict[tuple[BreakerState, BreakerEvent], BreakerState] = {
    (BreakerState.CLOSED, BreakerEvent.SUCCESS): BreakerState.CLOSED,
    (BreakerState.CLOSED, BreakerEvent.FAILURE): BreakerState.CLOSED,
    (BreakerState.CLOSED, BreakerEvent.TRIP): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.COOLED): BreakerState.HALF_OPEN,
    # answers of calls started before the breaker opened change nothing
    (BreakerState.OPEN, BreakerEvent.SUCCESS): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.FAILURE): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.TRIP): BreakerState.OPEN,
    (BreakerState.HALF_OPEN, BreakerEvent.SUCCESS): BreakerState.CLOSED,
    (BreakerState.HALF_OPEN, BreakerEvent.FAILURE): BreakerState.OPEN,
    (BreakerState.HALF_OPEN, BreakerEvent.TRIP): BreakerState.OPEN,
}


class Breaker:
    def __init__(self, threshold: int = 5, cooldown: float = 5.0) -> None:
        if threshold < 1 or cooldown <= 0:
            raise ValueError("breaker threshold must be >= 1 and cooldown > 0")
        self.threshold = threshold
        self.cooldown = cooldown
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False

    def __repr__(self) -> str:
        return f"Breaker(state={self.state.name}, failures={self.failures})"

    def _fire(self, event: BreakerEvent, now: float) -> None:
        new = TRANSITIONS[(self.state, event)]
        if new is BreakerState.OPEN and self.state is not BreakerState.OPEN:
            self.opened_at = now
        if event is BreakerEvent.SUCCESS or new is BreakerState.HALF_OPEN:
            self.failures = 0
        self.state = new

    def allow(self, now: float) -> bool:
        """Whether a call may go to the application now (False: answer it as an outage)."""
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.cooldown:
            self._fire(BreakerEvent.COOLED, now)
            self._probing = False
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record(self, ok: bool, now: float) -> None:
        """The outcome of a call that ``allow`` let through."""
        if self.state is BreakerState.HALF_OPEN:
            self._probing = False
        if ok:
            self._fire(BreakerEvent.SUCCESS, now)
            return
        self.failures += 1
        trip = self.failures >= self.threshold
        self._fire(BreakerEvent.TRIP if trip else BreakerEvent.FAILURE, now)
