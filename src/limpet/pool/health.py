"""SANS-IO: the backend health state machine, as a transition table.

A backend has two independent facts: its *health* (UP, or DOWN = ejected) and whether it is
*draining* (set by an operator or by discovery, e.g. a terminating pod). The public state a policy
sees is derived from both: DOWN -> EJECTED (nothing can be served there), UP and draining ->
DRAINING (keeps its sessions, takes no new ones), otherwise HEALTHY. Probes never touch the
draining flag, so a drained backend that answers its probes stays DRAINING.

``TRANSITIONS`` maps (health, event) to a ``Step``; ``advance`` interprets it. Tests iterate over
the table and ``describe()`` prints it for the docs.

Ejection causes:
- active: ``fall`` consecutive PROBE_FAIL; recovered by ``rise`` consecutive PROBE_OK.
- passive: ``passive_failures`` consecutive PASSIVE_FAIL (connect error / 5xx); recovered by
  ``rise`` PROBE_OK or, without probes, when ``eject_seconds`` have passed (TICK at/after the
  deadline), the way Envoy's outlier detection lets an ejected host back in. A PROBE_FAIL while
  DOWN cancels that deadline: a backend whose probes fail stays out until its probes pass.

A backend never seen up (no PROBE_OK, PASSIVE_OK or ANSWERED yet: it may still be starting) is tried, not
ejected by passive failures (``seen_up`` False makes that threshold unreachable); probes can still
eject it, and its first PROBE_OK brings it in at once (``rise`` counts only after it was once up).

A probe that timed out (PROBE_SLOW: not connected, or not answered, in time) counts toward
``fall`` like any failed probe, and marks the backend *overloaded*: nothing said it is gone, it
may only be too busy to answer. A refused, reset or unreachable probe, or a bad answer
(PROBE_FAIL), clears the mark. An overloaded backend is ejected like any other,
but a pool in panic offers it again (``Pool``): when a replica dies and its clients storm the
survivor, the survivor's probes time out under the storm, and ejecting it too would leave the
clients nowhere to go.

How many backends of a pool passive failures may eject at once (``max_ejection_percent``) and
when a pool spreads over its passively ejected backends too (``panic_threshold``) are pool-wide
rules: ``limpet.pool.pool.Pool`` applies them (``advance(..., may_eject=False)``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any, Literal

from limpet.pool.model import BackendState


@dataclass(frozen=True, slots=True)
class HealthRules:
    """Thresholds, as in HAProxy's ``rise``/``fall`` and Envoy's consecutive-5xx ejection."""

    rise: int = 2
    fall: int = 3
    passive_failures: int = 3
    eject_seconds: float = 10.0
    #: Envoy's ``max_ejection_percent``: passive failures never eject more than this share of a
    #: pool (at least one backend may always be ejected), so one client that makes every backend
    #: answer 5xx cannot empty the pool
    max_ejection_percent: int = 10
    #: Envoy's ``healthy_panic_threshold``: below this share of healthy backends the pool also
    #: offers its passively ejected ones (a probe has not confirmed them down)
    panic_threshold: int = 50

    def __post_init__(self) -> None:
        for name in ("rise", "fall", "passive_failures"):
            if getattr(self, name) < 1:
                raise ValueError(f"HealthRules.{name} must be >= 1")
        if self.eject_seconds < 0:
            raise ValueError("HealthRules.eject_seconds must be >= 0")
        for name in ("max_ejection_percent", "panic_threshold"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"HealthRules.{name} must be within 0..100")


class HealthEvent(enum.Enum):
    PROBE_OK = "probe-ok"
    PROBE_FAIL = "probe-fail"  # refused, reset, unreachable, or a bad answer
    PROBE_SLOW = "probe-slow"  # timed out: not connected, or not answered, in time
    PASSIVE_FAIL = "passive-fail"  # connect error / 5xx seen while proxying
    PASSIVE_OK = "passive-ok"  # a proxied exchange succeeded
    DRAIN = "drain"
    UNDRAIN = "undrain"
    TICK = "tick"  # time passes: a passive ejection may expire
    ANSWERED = "answered"  # the backend sent an HTTP response (any status): it is listening


class Health(enum.Enum):
    UP = "up"
    DOWN = "down"


Counter = Literal["probe_oks", "probe_fails", "passive_fails"]
Threshold = Literal["rise", "fall", "passive_failures", "expired"]
Timer = Literal["keep", "set", "clear"]


@dataclass(frozen=True, slots=True)
class Step:
    """One table entry: bump a counter, reset others, and move when a threshold is reached."""

    count: Counter | None = None
    reset: frozenset[Counter] = frozenset()
    when: Threshold | None = None  # None with ``to`` set: move unconditionally
    to: Health | None = None  # None: health unchanged
    timer: Timer = "keep"  # on moving: set the passive-ejection deadline, or clear it
    draining: bool | None = None  # DRAIN/UNDRAIN set the flag; None leaves it
    seen: bool = False  # a sign of life: the backend has now been seen up
    overloaded: bool | None = None  # PROBE_SLOW sets the mark, PROBE_FAIL clears it; None keeps


_ALL: frozenset[Counter] = frozenset({"probe_oks", "probe_fails", "passive_fails"})
_NOTHING = Step()
# A failed probe, by health; a slow one is the same step that marks the backend overloaded.
_FAILED_UP = Step(count="probe_fails", when="fall", to=Health.DOWN, timer="clear", overloaded=False)
# ... while down: start counting oks again and stop any expiry.
_FAILED_DOWN = Step(
    count="probe_fails",
    reset=frozenset({"probe_oks"}),
    to=Health.DOWN,
    timer="clear",
    overloaded=False,
)

TRANSITIONS: dict[tuple[Health, HealthEvent], Step] = {
    (Health.UP, HealthEvent.PROBE_OK): Step(
        reset=frozenset({"probe_fails"}), seen=True, overloaded=False
    ),
    (Health.UP, HealthEvent.PROBE_FAIL): _FAILED_UP,
    (Health.UP, HealthEvent.PROBE_SLOW): replace(_FAILED_UP, overloaded=True),
    (Health.UP, HealthEvent.PASSIVE_FAIL): Step(
        count="passive_fails", when="passive_failures", to=Health.DOWN, timer="set"
    ),
    (Health.UP, HealthEvent.PASSIVE_OK): Step(reset=frozenset({"passive_fails"}), seen=True),
    (Health.UP, HealthEvent.DRAIN): Step(draining=True),
    (Health.UP, HealthEvent.UNDRAIN): Step(draining=False),
    (Health.UP, HealthEvent.TICK): _NOTHING,
    (Health.UP, HealthEvent.ANSWERED): Step(seen=True),
    (Health.DOWN, HealthEvent.PROBE_OK): Step(
        count="probe_oks", when="rise", to=Health.UP, timer="clear", seen=True
    ),
    (Health.DOWN, HealthEvent.PROBE_FAIL): _FAILED_DOWN,
    (Health.DOWN, HealthEvent.PROBE_SLOW): replace(_FAILED_DOWN, overloaded=True),
    # Late reports from exchanges that started before the ejection say nothing new.
    (Health.DOWN, HealthEvent.PASSIVE_FAIL): _NOTHING,
    (Health.DOWN, HealthEvent.PASSIVE_OK): _NOTHING,
    (Health.DOWN, HealthEvent.DRAIN): Step(draining=True),
    (Health.DOWN, HealthEvent.UNDRAIN): Step(draining=False),
    (Health.DOWN, HealthEvent.TICK): Step(when="expired", to=Health.UP, timer="clear"),
    (Health.DOWN, HealthEvent.ANSWERED): Step(seen=True),
}


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """Everything the state machine remembers about one backend."""

    health: Health = Health.UP
    draining: bool = False
    probe_oks: int = 0
    probe_fails: int = 0
    passive_fails: int = 0
    ejected_until: float | None = None  # passive ejection deadline (same clock as ``now``)
    seen_up: bool = False  # once up (a probe or an exchange succeeded): thresholds apply in full
    overloaded: bool = False  # the last failed probe timed out (rather than being refused)

    @property
    def passively_ejected(self) -> bool:
        """Ejected by passive failures and not (yet) confirmed down by a probe."""
        return self.health is Health.DOWN and self.ejected_until is not None

    @property
    def panic_candidate(self) -> bool:
        """Ejected, but not known to be unreachable: passively ejected, or overloaded. A pool in
        panic offers these again; a backend whose probes are refused stays out."""
        return self.health is Health.DOWN and (self.ejected_until is not None or self.overloaded)

    @property
    def state(self) -> BackendState:
        if self.health is Health.DOWN:
            return BackendState.EJECTED
        return BackendState.DRAINING if self.draining else BackendState.HEALTHY


def _reached(status: HealthStatus, when: Threshold, rules: HealthRules, now: float) -> bool:
    if when == "rise":
        # never up before: the first OK brings it in (it was starting, not flapping)
        return status.probe_oks >= (rules.rise if status.seen_up else 1)
    if when == "fall":
        return status.probe_fails >= rules.fall
    if when == "passive_failures":
        # never up before: connect errors are expected while it starts; only probes eject it
        return status.seen_up and status.passive_fails >= rules.passive_failures
    return status.ejected_until is not None and now >= status.ejected_until


def _zero(names: frozenset[Counter]) -> dict[str, Any]:
    return dict.fromkeys(names, 0)


def advance(
    status: HealthStatus,
    event: HealthEvent,
    rules: HealthRules,
    now: float,
    *,
    may_eject: bool = True,
) -> HealthStatus:
    """Apply one event; a pure function of its arguments (time is a parameter).

    ``may_eject=False`` (the pool's ejection budget is spent) keeps a passive ejection from
    happening: the failure is counted, and ejects on a later failure once the budget allows.
    """
    step = TRANSITIONS[(status.health, event)]
    new = _apply(status, step, rules, now, may_eject)
    if step.seen and not new.seen_up:  # after the thresholds: they read the earlier fact
        new = replace(new, seen_up=True)
    return new


def _apply(
    status: HealthStatus, step: Step, rules: HealthRules, now: float, may_eject: bool
) -> HealthStatus:
    new = status
    if step.draining is not None:
        new = replace(new, draining=step.draining)
    if step.overloaded is not None and step.overloaded is not new.overloaded:
        new = replace(new, overloaded=step.overloaded)
    if step.reset and any(getattr(new, name) for name in step.reset):
        new = replace(new, **_zero(step.reset))
    if step.count is not None:
        bumped: dict[str, Any] = {step.count: getattr(new, step.count) + 1}
        new = replace(new, **bumped)
    if step.to is None or (step.when is not None and not _reached(new, step.when, rules, now)):
        return new
    if step.timer == "set" and not may_eject:
        return new
    if step.to is not status.health:
        new = replace(new, health=step.to, **_zero(_ALL))
    if step.timer == "set":
        new = replace(new, ejected_until=now + rules.eject_seconds)
    elif step.timer == "clear":
        new = replace(new, ejected_until=None)
    return new


def describe() -> str:
    """The transition table as Markdown, for docs and test failure messages."""
    lines = ["| health | event | effect |", "|---|---|---|"]
    for (health, event), step in TRANSITIONS.items():
        parts: list[str] = []
        if step.draining is not None:
            parts.append(f"draining={step.draining}")
        if step.overloaded is not None:
            parts.append(f"overloaded={step.overloaded}")
        if step.reset:
            parts.append("reset " + ", ".join(sorted(step.reset)))
        if step.count:
            parts.append(f"{step.count} += 1")
        if step.seen:
            parts.append("seen_up")
        if step.to is not None:
            cond = f" when {step.when}" if step.when else ""
            parts.append(f"-> {step.to.value}{cond} (timer {step.timer})")
        lines.append(f"| {health.value} | {event.value} | {'; '.join(parts) or 'nothing'} |")
    return "\n".join(lines)
