"""Typed, versioned records that cross process boundaries (encoded with msgspec JSON).

Every broker carries the same records, so a hub never passes untyped dicts around and never
unpickles anything. ``v`` is the record version; a decoder rejects a tag or shape it does not know.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Literal

import msgspec

from limpet.hub.channels.payload import MAX_DEPTH, decoded_within

RECORD_VERSION = 1
#: what a Message record adds around its data at most (kind, channel, epoch, offset, ts, v)
ENVELOPE_BYTES = 4096


class Position(msgspec.Struct, frozen=True):
    """Where a channel (or a client) is: the history identity and the last offset."""

    epoch: str
    offset: int


class Message(msgspec.Struct, frozen=True, tag="message", tag_field="kind"):
    """One published message of a channel. ``ts`` is wall-clock milliseconds at publish."""

    channel: str
    epoch: str
    offset: int
    data: Any
    ts: int = 0
    v: int = RECORD_VERSION

    def wire(self) -> dict[str, Any]:
        """The socket.io / HTTP form of DESIGN.md: {channel, epoch, offset, data}."""
        return {
            "channel": self.channel,
            "epoch": self.epoch,
            "offset": self.offset,
            "data": self.data,
        }


class PresenceEvent(msgspec.Struct, frozen=True, tag="presence", tag_field="kind"):
    """A client joined or left a channel (ephemeral: never stored in history, has no offset)."""

    channel: str
    action: Literal["join", "leave"]
    client: str
    info: dict[str, Any] = {}
    v: int = RECORD_VERSION


Envelope = Message | PresenceEvent


class HistoryPage(msgspec.Struct, frozen=True):
    """What a broker knows about a channel at one instant: its position and messages after ``since``."""

    epoch: str
    offset: int
    messages: tuple[Message, ...] = ()

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)


def encode_envelope(record: Envelope) -> bytes:
    return _encoder.encode(record)


def decode_envelope(
    raw: bytes | str, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None
) -> Envelope:
    """Decode a record; raise msgspec.ValidationError/DecodeError on anything unexpected,
    and msgspec.DecodeError on one whose data nests deeper than ``max_depth`` or is larger
    than ``max_bytes`` (the hub's limits, payload.py; the size before parsing)."""
    if max_bytes is not None and len(raw) > max_bytes + ENVELOPE_BYTES:
        raise msgspec.DecodeError(f"record larger than {max_bytes} bytes of data")
    try:
        record: Envelope = _decoder.decode(raw)
    except RecursionError:  # deeper than the parser goes: deeper than any max_depth
        raise msgspec.DecodeError(f"record data nested deeper than {max_depth} levels") from None
    inner = record.data if isinstance(record, Message) else record.info
    if not decoded_within(raw, inner, max_depth):
        raise msgspec.DecodeError(f"record data nested deeper than {max_depth} levels")
    if record.v != RECORD_VERSION:
        raise msgspec.ValidationError(f"unsupported record version {record.v}")
    return record


def encode_data(data: Any) -> bytes:
    """The JSON encoding of a message's data (also what the payload size limit measures)."""
    return _encoder.encode(data)


class Unreadable:
    """The data of a stored message this replica does not decode (not JSON, or past the hub's
    depth or size limit: written by something else, or by a replica with larger limits). The
    message keeps its position; it is not encoded for a client, so the hub announces it as not
    recovered instead of delivering it (see hub.server)."""

    def __repr__(self) -> str:
        return "UNREADABLE"


UNREADABLE = Unreadable()

_MESSAGE_HEAD = re.compile(
    rb'\{"kind":"message","channel":"([^"\\]+)","epoch":"([^"\\]*)","offset":(\d+),'
)


def decode_data(
    raw: bytes | str, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None
) -> Any:
    """A stored message's data, or UNREADABLE when it does not decode or is past the hub's
    limits (the same answer on every Python version, see payload.decoded_within)."""
    if max_bytes is not None and len(raw) > max_bytes:
        return UNREADABLE
    try:
        data = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):  # RecursionError: deeper than any max_depth
        return UNREADABLE
    return data if decoded_within(raw, data, max_depth) else UNREADABLE


def decode_message_head(raw: bytes) -> Message | None:
    """The position of an encoded ``Message`` whose data does not decode (its fields before
    ``data`` are written in a fixed order), as a message with UNREADABLE data; None if ``raw``
    is not a message at all."""
    match = _MESSAGE_HEAD.match(raw)
    if match is None:
        return None
    channel, epoch, offset = match.groups()
    return Message(channel.decode(), epoch.decode(), int(offset), UNREADABLE)


def new_epoch() -> str:
    """A fresh, opaque epoch: random so two histories never share one by accident."""
    return secrets.token_hex(6)
