"""One channel event as the application receives it, and its encoding in the broker's queue.

Types: ``occupied`` (the channel's first subscriber, over all replicas), ``vacated`` (its last
left), ``join`` / ``leave`` (a subscriber came or went), ``publish`` (a message was stored). Each
carries an ``id`` made when it happened, kept through retries and replica restarts: the
application drops an id it has seen (delivery is at least once).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

EventType = Literal["occupied", "vacated", "join", "leave", "publish"]
TYPES: tuple[EventType, ...] = ("occupied", "vacated", "join", "leave", "publish")


class ChannelEvent(msgspec.Struct, omit_defaults=True, frozen=True):
    id: str
    type: EventType
    channel: str
    #: ms since the epoch, when it happened
    ts: int
    #: the replica it happened on
    replica: str = ""
    client: str | None = None
    user: str | None = None
    info: dict[str, Any] | None = None
    epoch: str | None = None
    offset: int | None = None
    data: Any = None


def new_event_id() -> str:
    return uuid.uuid4().hex


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ChannelEvent)


def encode_event(event: ChannelEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(raw: bytes) -> ChannelEvent | None:
    """The event, or None for a record this version cannot read (it is skipped, and logged)."""
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        return None


def occupancy(joined: bool, members_after: int, changed: bool) -> EventType | None:
    """``occupied`` when a join made the channel's first member, ``vacated`` when a leave removed
    its last; ``changed``: the member was really added / removed (not a refresh, not twice)."""
    if not changed:
        return None
    if joined and members_after == 1:
        return "occupied"
    if not joined and members_after == 0:
        return "vacated"
    return None
