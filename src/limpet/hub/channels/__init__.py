"""SANS-IO core of the hub: channel names, offsets and epochs, history, recovery, idempotency.

Nothing here does I/O or reads a clock: time is a parameter, decisions are values.
"""

from limpet.hub.channels.history import ChannelLog, HistoryPolicy, HistoryRules
from limpet.hub.channels.idempotency import IdempotencyWindow
from limpet.hub.channels.names import MAX_CHANNEL_LENGTH, validate_channel
from limpet.hub.channels.records import (
    Envelope,
    HistoryPage,
    Message,
    Position,
    PresenceEvent,
    decode_envelope,
    encode_envelope,
    new_epoch,
)
from limpet.hub.channels.recovery import Recovery, SeamState, Subscription, plan_recovery

__all__ = [
    "MAX_CHANNEL_LENGTH",
    "ChannelLog",
    "Envelope",
    "HistoryPage",
    "HistoryPolicy",
    "HistoryRules",
    "IdempotencyWindow",
    "Message",
    "Position",
    "PresenceEvent",
    "Recovery",
    "SeamState",
    "Subscription",
    "decode_envelope",
    "encode_envelope",
    "new_epoch",
    "plan_recovery",
    "validate_channel",
]
