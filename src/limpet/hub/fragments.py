"""SANS-IO: the bytes a hub replica holds in unfinished WebSocket messages, and their budget.

A WebSocket message may come in fragments (frames without FIN) and a frame's payload in many
reads; aiohttp keeps all of it until the message is complete. ``--max-message`` bounds one
message, so one connection, but nothing bounded them all: 20 clients that each started a 16 MiB
message and never finished it held 302 MB for over a minute. ``MessageMeter`` follows one
connection's client-to-hub byte stream (RFC 6455 frame headers only; payloads are skipped, not
kept) and says how many payload bytes its unfinished message holds. ``UnfinishedBudget`` is the
replica-wide bound on their sum: a connection whose unfinished message would grow it past
``limit`` is refused (the hub closes it with 1013), while messages that complete within one
read (every ordinary client) never hold anything.

Hand-written because aiohttp's reader (compiled) does not say how much it holds; this reads
only the 2-14 header bytes of each frame and validates nothing (aiohttp does that).
"""

from __future__ import annotations

import enum


class _State(enum.Enum):
    HEAD = "head"  # reading a frame header
    PAYLOAD = "payload"  # skipping a frame's payload


#: the transitions of ``MessageMeter`` (a header read -> its payload -> the next header)
TRANSITIONS: dict[_State, frozenset[_State]] = {
    _State.HEAD: frozenset({_State.PAYLOAD, _State.HEAD}),  # HEAD -> HEAD: an empty payload
    _State.PAYLOAD: frozenset({_State.HEAD}),
}


def _head_size(head: bytes) -> int | None:
    """The size of the frame header starting ``head`` (None: fewer than 2 bytes to tell)."""
    if len(head) < 2:
        return None
    flag = head[1] & 0x7F
    return 2 + (2 if flag == 126 else 8 if flag == 127 else 0) + (4 if head[1] & 0x80 else 0)


class MessageMeter:
    """One connection's client-to-server WebSocket byte stream, fed as it arrives; ``held`` is
    the payload bytes of the message not yet complete (its earlier fragments and what arrived of
    the current frame). Control frames (close, ping, pong) are never part of a message."""

    __slots__ = ("_data", "_fin", "_head", "_left", "_state", "held")

    def __init__(self) -> None:
        self._state = _State.HEAD
        self._head = b""
        self._left = 0
        self._data = False
        self._fin = False
        self.held = 0

    def feed(self, data: bytes) -> int:
        """Follow ``data`` (the next bytes of the stream); return ``held`` after it."""
        # the state in locals while the loop runs (this runs for every read of every websocket)
        pos, end = 0, len(data)
        left, is_data, fin, held = self._left, self._data, self._fin, self.held
        in_payload = self._state is _State.PAYLOAD
        carried = self._head
        while pos < end:
            if in_payload:
                n = left if left < end - pos else end - pos
                pos += n
                left -= n
                if is_data:
                    held += n
                if left:
                    continue
                in_payload = False  # PAYLOAD -> HEAD
                if is_data and fin:
                    held = 0  # the message is complete: aiohttp hands it over
                continue
            if carried:  # a header split across reads: join its parts
                had = len(carried)
                head = carried + data[pos : pos + 14 - had]
            else:
                had, head = 0, data[pos : pos + 14]
            size = _head_size(head)
            if size is None or len(head) < size:
                carried = head  # the rest of data was all taken: wait for more
                break
            pos += size - had
            carried = b""
            b0, flag = head[0], head[1] & 0x7F
            fin = b0 >= 0x80
            is_data = (b0 & 0x0F) < 8
            if flag == 126:
                left = int.from_bytes(head[2:4], "big")
            elif flag == 127:
                left = int.from_bytes(head[2:10], "big")
            else:
                left = flag
            if left:
                in_payload = True  # HEAD -> PAYLOAD
            elif is_data and fin:
                held = 0  # HEAD -> HEAD: an empty last fragment completes the message
        self._left, self._data, self._fin, self.held = left, is_data, fin, held
        self._state = _State.PAYLOAD if in_payload else _State.HEAD
        self._head = carried
        return held


class UnfinishedBudget:
    """The bytes held in unfinished messages by all of a replica's connections (``hold`` each
    one's ``MessageMeter.held`` after each read; ``release`` when it is gone), bounded by
    ``limit`` (0: no bound). A connection may always shrink or keep what it holds; it may grow
    only while the sum stays within ``limit``."""

    __slots__ = ("_held", "limit", "refused", "total")

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("limit >= 0 is required")
        self.limit = limit
        self.total = 0
        self.refused = 0
        self._held: dict[object, int] = {}

    def hold(self, key: object, held: int) -> bool:
        """Whether connection ``key`` may now hold ``held`` bytes; if not, it keeps what it held
        (until ``release``) and the refusal is counted."""
        old = self._held.get(key, 0)
        if held > old and self.limit and self.total - old + held > self.limit:
            self.refused += 1
            return False
        self.total += held - old
        if held:
            self._held[key] = held
        else:
            self._held.pop(key, None)
        return True

    def release(self, key: object) -> None:
        """Connection ``key`` is gone (idempotent)."""
        self.total -= self._held.pop(key, 0)

    def snapshot(self) -> dict[str, int]:
        return {
            "limit": self.limit,
            "held": self.total,
            "connections": len(self._held),
            "refused": self.refused,
        }
