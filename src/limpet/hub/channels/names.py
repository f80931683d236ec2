"""Channel names: one rule, shared by the socket events, the HTTP API and every broker.

The name travels in URL paths (`/api/channels/{C}/messages`), Redis keys and NATS subjects, so
it is kept to characters that are safe in all three: no `/`, no spaces, no NATS wildcards.
"""

from __future__ import annotations

import re

from limpet.errors import ChannelError

MAX_CHANNEL_LENGTH = 128
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@=-]*")


def validate_channel(name: object) -> str:
    """Return ``name`` when it is a valid channel name; raise ChannelError saying why otherwise."""
    if not isinstance(name, str):
        raise ChannelError("channel must be a string")
    if not name:
        raise ChannelError("channel must not be empty")
    if len(name) > MAX_CHANNEL_LENGTH:
        raise ChannelError(f"channel name longer than {MAX_CHANNEL_LENGTH} characters")
    if not _NAME.fullmatch(name):
        raise ChannelError(
            f"invalid channel name {name!r}: use letters, digits and _ . : @ = - "
            "(not starting with . : @ = -)"
        )
    if ".." in name or name.endswith("."):
        # NATS subjects are dot-separated tokens; an empty token is invalid there.
        raise ChannelError(f"invalid channel name {name!r}: empty '.'-separated part")
    return name
