"""SANS-IO: the state machine of a downstream (client) connection, as a transition table.

A downstream connection reads HTTP requests (READING) until the client half-closes
(HALF_CLOSED: the answers in flight finish, nothing new is read), a request asks for an upgrade
(UPGRADING: no more HTTP is read; the backend's ``101`` makes it a TUNNEL), or the proxy
refuses the byte stream (REFUSED: the local answer is sent and what the client still sends is
read and dropped, RFC 9112 §9.6). It ends CLOSED from any state. ``TRANSITIONS`` maps
(state, event) to the next state; ``advance`` interprets it; an event a state does not list
leaves it unchanged (a late EOF in a tunnel, say). Tests iterate over the table.
"""

from __future__ import annotations

import enum


class DownState(enum.Enum):
    READING = "reading"
    HALF_CLOSED = "half-closed"
    UPGRADING = "upgrading"
    TUNNEL = "tunnel"
    REFUSED = "refused"
    CLOSED = "closed"


class DownEvent(enum.Enum):
    CLIENT_EOF = "client-eof"  # the client sent FIN while a request is in flight
    UPGRADE_REQUESTED = "upgrade-requested"  # the wire core handed over the bytes after a head
    SWITCHED = "switched"  # the backend answered 101
    REFUSE = "refuse"  # a local error answer was sent
    LOST = "lost"  # the transport is gone


S, E = DownState, DownEvent
TRANSITIONS: dict[tuple[DownState, DownEvent], DownState] = {
    (S.READING, E.CLIENT_EOF): S.HALF_CLOSED,
    (S.READING, E.UPGRADE_REQUESTED): S.UPGRADING,
    (S.READING, E.REFUSE): S.REFUSED,
    (S.HALF_CLOSED, E.REFUSE): S.REFUSED,
    (S.UPGRADING, E.CLIENT_EOF): S.HALF_CLOSED,
    (S.UPGRADING, E.SWITCHED): S.TUNNEL,
    (S.HALF_CLOSED, E.SWITCHED): S.TUNNEL,
    (S.UPGRADING, E.REFUSE): S.REFUSED,
    **{(state, E.LOST): S.CLOSED for state in DownState},
}


def advance(state: DownState, event: DownEvent) -> DownState:
    """The state after ``event``; unchanged when the table has no such step."""
    return TRANSITIONS.get((state, event), state)


def describe() -> str:
    """The table as text, for the docs."""
    return "\n".join(f"{s.value:12} --{e.value}--> {t.value}" for (s, e), t in TRANSITIONS.items())
