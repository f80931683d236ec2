"""SANS-IO: the state machines of a downstream (client) connection and of one exchange, as tables.

A downstream connection reads HTTP requests (READING) until the client half-closes
(HALF_CLOSED: the answers in flight finish, nothing new is read), a request asks for an upgrade
(UPGRADING: no more HTTP is read; the backend's ``101`` makes it a TUNNEL), or the proxy
refuses the byte stream (REFUSED: the local answer is sent and what the client still sends is
read and dropped, RFC 9112 §9.6). It ends CLOSED from any state. ``TRANSITIONS`` maps
(state, event) to the next state; ``advance`` interprets it. Both tables here are read alike:
a step that changes nothing is listed as such (a late event after CLOSED, more upgraded bytes
while UPGRADING), and a step neither table lists raises ``StepError``: a bug in the caller,
found by the tests instead of silently ignored. Tests iterate over the tables.
"""

from __future__ import annotations

import enum


class FastEnum(enum.Enum):
    """An enum whose members hash by identity: Enum's own ``__hash__`` is a Python-level
    ``hash(self._name_)``, and the tables below are looked up several times per request
    (it showed as ~2 % of the proxy's CPU per request in bench/proxy/hotpath.py). Members are
    singletons, so identity is the same equality."""

    __hash__ = object.__hash__


class DownState(FastEnum):
    READING = "reading"
    HALF_CLOSED = "half-closed"
    UPGRADING = "upgrading"
    TUNNEL = "tunnel"
    REFUSED = "refused"
    CLOSED = "closed"


class DownEvent(FastEnum):
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
    # the wire core hands every later read of an upgrading connection over as upgraded bytes
    (S.UPGRADING, E.UPGRADE_REQUESTED): S.UPGRADING,
    **{(state, E.LOST): S.CLOSED for state in DownState},
    **{(S.CLOSED, event): S.CLOSED for event in DownEvent},  # closed is final
}


class StepError(RuntimeError):
    """A step a state table does not allow: a bug in the caller, never the client's."""


def advance(state: DownState, event: DownEvent) -> DownState:
    """The connection's state after ``event``; a step the table does not list raises."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise StepError(f"downstream: no step {event.value!r} from {state.value!r}") from None


def describe() -> str:
    """The table as text, for the docs."""
    return "\n".join(f"{s.value:12} --{e.value}--> {t.value}" for (s, e), t in TRANSITIONS.items())


# -- one exchange (limpet.proxy.http1.Exchange) ------------------------------------------------


class ExState(FastEnum):
    """Where one request/response is. The request's own facts (its body ended, some of it
    was written upstream) are kept beside the state: they decide retries, not the step."""

    QUEUED = "queued"  # parsed; waiting its turn, or a chunked body's first chunk line
    CONNECTING = "connecting"  # started: a backend is being picked and a connection made
    SENDING = "sending"  # the head went upstream; the request body is still arriving
    WAITING = "waiting"  # the whole request went upstream; the response timeout runs
    INTERIM = "interim"  # a 1xx was relayed after the request was sent; the final head follows
    HELD = "held"  # a filter holds the final head until the body ended (filters.py)
    RESPONDING = "responding"  # the final response head went downstream; its body follows
    TUNNEL = "tunnel"  # 101: the upstream connection belongs to the tunnel now
    DONE = "done"  # the whole response went downstream
    LOCAL = "local"  # answered by the proxy itself (404, 502, 503, 504) before any response
    ABORTED = "aborted"  # the client left or its request broke before any response went down
    CUT = "cut"  # the response was cut short: the client sees the connection end


class ExEvent(FastEnum):
    START = "start"  # its turn came and it may go upstream
    ATTACH = "attach"  # an upstream connection is ready and the head was written on it
    SENT = "sent"  # the last byte of the request went upstream
    INTERIM_HEAD = "interim-head"  # a 1xx (not 101) from the backend
    HOLD = "hold"  # a filter took the final response head (it writes it at the end)
    FINAL_HEAD = "final-head"  # the final response head went downstream
    SWITCH = "switch"  # the backend answered 101 to an upgrade
    END = "end"  # the response ended
    RETRY = "retry"  # the upstream failed before answering; another connection is tried
    LOCAL = "local"  # the proxy answers itself
    ABORT = "abort"  # the client left, or the rest of the exchange was given up


X, V = ExState, ExEvent
#: exchanges that may still go upstream or answer (not yet a tunnel, done or ended otherwise)
EX_LIVE = frozenset({X.QUEUED, X.CONNECTING, X.SENDING, X.WAITING, X.INTERIM, X.HELD, X.RESPONDING})
#: states with an upstream connection and nothing of the response sent downstream yet
_EX_UPSTREAM = (X.SENDING, X.WAITING, X.INTERIM)
EX_TRANSITIONS: dict[tuple[ExState, ExEvent], ExState] = {
    (X.QUEUED, V.START): X.CONNECTING,
    (X.CONNECTING, V.ATTACH): X.SENDING,
    (X.SENDING, V.SENT): X.WAITING,
    # a 1xx before the request ended changes nothing (no response timeout runs yet); after it,
    # the response timeout is over: the backend is alive and the final head may take long
    (X.SENDING, V.INTERIM_HEAD): X.SENDING,
    (X.WAITING, V.INTERIM_HEAD): X.INTERIM,
    (X.INTERIM, V.INTERIM_HEAD): X.INTERIM,
    # a backend may answer before the request body ended (the rest then has nowhere to go)
    **{(s, V.FINAL_HEAD): X.RESPONDING for s in _EX_UPSTREAM},
    **{(s, V.HOLD): X.HELD for s in _EX_UPSTREAM},
    **{(s, V.SWITCH): X.TUNNEL for s in _EX_UPSTREAM},
    (X.RESPONDING, V.END): X.DONE,
    (X.HELD, V.END): X.DONE,  # the filter wrote the head and the body at once
    (X.CONNECTING, V.RETRY): X.CONNECTING,
    **{(s, V.RETRY): X.CONNECTING for s in (*_EX_UPSTREAM, X.HELD)},
    **{(s, V.LOCAL): X.LOCAL for s in (X.CONNECTING, *_EX_UPSTREAM, X.HELD)},
    **{(s, V.ABORT): X.ABORTED for s in (X.QUEUED, X.CONNECTING, *_EX_UPSTREAM, X.HELD)},
    (X.RESPONDING, V.ABORT): X.CUT,
}
#: the response head went downstream: a local answer can no longer be sent
EX_RESPONSE_STARTED = frozenset({X.RESPONDING, X.TUNNEL, X.DONE, X.CUT})


class ExchangeStepError(StepError):
    """A step the exchange table does not allow."""


def ex_advance(state: ExState, event: ExEvent) -> ExState:
    """The exchange's state after ``event``; a step the table does not list raises."""
    try:
        return EX_TRANSITIONS[(state, event)]
    except KeyError:
        raise ExchangeStepError(f"exchange: no step {event.value!r} from {state.value!r}") from None


def ex_describe() -> str:
    """The exchange table as text, for the docs."""
    return "\n".join(
        f"{s.value:10} --{e.value}--> {t.value}" for (s, e), t in EX_TRANSITIONS.items()
    )


#: the exchange table by state, then event: the same steps as EX_TRANSITIONS (derived from it),
#: looked up without building a (state, event) tuple, five times per request
EX_STEPS: dict[ExState, dict[ExEvent, ExState]] = {state: {} for state in ExState}
for (_state, _event), _next in EX_TRANSITIONS.items():
    EX_STEPS[_state][_event] = _next
del _state, _event, _next

# The members the per-request code reads, as module constants. Read through its class, an Enum
# member costs ~0.1 µs on Python 3.11 (EnumType's attribute lookup), a module global ~0.01 µs,
# and the proxy read ~25 of them per request (limpet.proxy.http1 imports these instead).
READING, HALF_CLOSED, UPGRADING = DownState.READING, DownState.HALF_CLOSED, DownState.UPGRADING
TUNNEL, REFUSED = DownState.TUNNEL, DownState.REFUSED
QUEUED, CONNECTING, SENDING, WAITING = X.QUEUED, X.CONNECTING, X.SENDING, X.WAITING
HELD, RESPONDING, DONE = X.HELD, X.RESPONDING, X.DONE
EV_START, EV_ATTACH, EV_SENT, EV_END = V.START, V.ATTACH, V.SENT, V.END
EV_INTERIM_HEAD, EV_HOLD, EV_FINAL_HEAD, EV_SWITCH = V.INTERIM_HEAD, V.HOLD, V.FINAL_HEAD, V.SWITCH
EV_RETRY, EV_LOCAL, EV_ABORT = V.RETRY, V.LOCAL, V.ABORT
