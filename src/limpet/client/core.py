"""SANS-IO: the state of one channel subscription on the client side (the twin of
``ChannelState`` in clients/js/limpet-client.js): what to deliver, what is a gap, when to
subscribe again. No sockets, no clock; the asyncio client feeds it events and acts on its answers.

Transitions (``TRANSITIONS``)::

    IDLE --subscribe--> SUBSCRIBING --ack--> LIVE --hole--> SUBSCRIBING
                                              LIVE --stall--> STALLED --subscribe--> SUBSCRIBING
    any --disconnect--> IDLE

Only LIVE delivers: the next offset is delivered, an older one is a duplicate (the seam between
history and live, a retransmission) and dropped, a newer one is a hole and the subscription asks
the hub again from its position. STALLED is the consumer falling behind its bounded queue: messages
are dropped and, once it has room, it subscribes again with ``since`` (history refills them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class GapReason(enum.StrEnum):
    """Why messages could not be recovered."""

    #: the channel's history was lost and restarted: offsets start again in a new epoch
    EPOCH_CHANGED = "epoch-changed"
    #: the missed messages are no longer in the hub's history (its size or TTL window)
    HISTORY_WINDOW = "history-window"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client is in a channel: the epoch (history) and the offset of its last message."""

    epoch: str
    offset: int

    @classmethod
    def parse(cls, value: Position | dict[str, Any] | None) -> Position | None:
        """A Position from itself or a ``{"epoch", "offset"}`` dict (as saved in JSON)."""
        if value is None or isinstance(value, Position):
            return value
        if (
            isinstance(value, dict)
            and isinstance(value.get("epoch"), str)
            and isinstance(value.get("offset"), int)
            and not isinstance(value.get("offset"), bool)
            and value["offset"] >= 0
        ):
            return cls(value["epoch"], value["offset"])
        raise ValueError(
            f'a position is {{"epoch": <string>, "offset": <integer >= 0>}}, not {value!r}'
        )

    def as_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset}


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a channel, delivered once, in offset order."""

    channel: str
    epoch: str
    offset: int
    data: Any

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages after ``from_`` up to ``to`` could not be recovered; delivery goes on after ``to``."""

    channel: str
    from_: Position
    to: Position
    reason: GapReason


@dataclass(frozen=True, slots=True)
class Presence:
    """Another client joined or left the channel (subscribe with ``presence=True``)."""

    type: str
    channel: str
    client: str
    user: str | None = None
    replica: str | None = None


class State(enum.Enum):
    IDLE = "idle"
    SUBSCRIBING = "subscribing"
    LIVE = "live"
    STALLED = "stalled"


class Event(enum.Enum):
    SUBSCRIBE = "subscribe"
    ACK = "ack"
    HOLE = "hole"
    STALL = "stall"
    DISCONNECT = "disconnect"


TRANSITIONS: dict[tuple[State, Event], State] = {
    **{(s, Event.SUBSCRIBE): State.SUBSCRIBING for s in State},
    **{(s, Event.DISCONNECT): State.IDLE for s in State},
    (State.SUBSCRIBING, Event.ACK): State.LIVE,
    (State.LIVE, Event.HOLE): State.SUBSCRIBING,
    (State.LIVE, Event.STALL): State.STALLED,
}


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one message: deliver it, report a gap first, subscribe again."""

    deliver: bool = False
    gap: Gap | None = None
    resubscribe: bool = False


DROP = Decision()


class ChannelState:
    """One channel's delivery state; ``position`` is the last message handed to the application."""

    def __init__(self, channel: str, position: Position | None = None) -> None:
        self.channel = channel
        self.position = position
        self.state = State.IDLE
        self.token = 0
        self._since: Position | None = None

    def __repr__(self) -> str:
        return f"ChannelState(channel={self.channel!r}, state={self.state.name}, position={self.position})"

    def _go(self, event: Event) -> None:
        self.state = TRANSITIONS[(self.state, event)]

    def subscribe(self) -> tuple[int, Position | None]:
        """A subscribe is about to be sent: its token and its ``since`` (None: from now)."""
        self._go(Event.SUBSCRIBE)
        self.token += 1
        self._since = self.position
        return self.token, self._since

    def disconnect(self) -> None:
        """The connection dropped: whatever was in flight is void."""
        self._go(Event.DISCONNECT)
        self.token += 1

    def stall(self) -> None:
        """The application's queue is full: drop messages until it subscribes again."""
        if self.state is State.LIVE:
            self._go(Event.STALL)

    def on_ack(
        self, token: int, epoch: str, offset: int, recovered: bool
    ) -> tuple[bool, Gap | None]:
        """The hub acknowledged subscribe ``token``. Returns (stale, gap)."""
        if token != self.token or self.state is not State.SUBSCRIBING:
            return True, None
        self._go(Event.ACK)
        since, self._since = self._since, None
        to = Position(epoch, offset)
        if since is None:
            self.position = to
            return False, None
        if recovered:
            return False, None  # the missed messages follow the ack
        self.position = to
        if since == to:
            return False, None
        return False, self._gap(since, to)

    def on_message(self, epoch: str, offset: int) -> Decision:
        if self.state is not State.LIVE or self.position is None:
            return DROP
        here = self.position
        if epoch != here.epoch:
            # a new history without a recovery event first: report it, then follow the new epoch
            self.position = Position(epoch, offset)
            return Decision(deliver=True, gap=self._gap(here, Position(epoch, offset - 1)))
        if offset <= here.offset:
            return DROP
        if offset == here.offset + 1:
            self.position = Position(epoch, offset)
            return Decision(deliver=True)
        self._go(Event.HOLE)
        return Decision(resubscribe=True)

    def on_recovery(self, epoch: str, offset: int) -> Gap | None:
        """The hub could not fill a hole of a live subscription; it goes on from (epoch, offset)."""
        if self.state is not State.LIVE or self.position is None:
            return None
        here, to = self.position, Position(epoch, offset)
        self.position = to
        if here.epoch == to.epoch and here.offset >= to.offset:
            return None
        return self._gap(here, to)

    def _gap(self, from_: Position, to: Position) -> Gap:
        reason = GapReason.HISTORY_WINDOW if from_.epoch == to.epoch else GapReason.EPOCH_CHANGED
        return Gap(self.channel, from_, to, reason)
