"""The settings of one hub replica (``limpet hub`` flags -> this)."""

from __future__ import annotations

from dataclasses import dataclass

from limpet.hub.channels.payload import MAX_DEPTH


@dataclass(frozen=True)
class HubSettings:
    name: str = "hub"
    max_payload: int = 64 * 1024
    #: the most messages one recovery (or one HTTP history page) returns
    history_limit: int = 1000
    presence_ttl: float = 15.0
    jwt_secret: str | None = None
    cors_origins: str | list[str] = "*"
    #: most packets waiting for one client; past it the client is disconnected (it recovers
    #: with ``since`` on reconnect)
    max_queue: int = 1000
    #: per-message deflate on websockets (costs CPU per frame per client; saves bandwidth)
    ws_compression: bool = False
    #: deepest nesting of lists/objects accepted in a message's data
    max_depth: int = MAX_DEPTH
    #: largest socket.io message read at all (Engine.IO's limit); between ``max_payload`` and
    #: this a publish gets an error ack, past it the transport closes the connection
    max_message: int = 16 << 20
    #: bytes held in unfinished WebSocket messages by all connections together (each one's is
    #: bounded by ``max_message``); a connection whose unfinished message would pass it is
    #: closed with 1013 (limpet.hub.fragments); 0: no bound
    max_unfinished: int = 64 << 20
    #: refuse JWTs without an ``exp`` claim (without it, a token without exp never expires)
    jwt_require_exp: bool = False
    #: history reads one gap fill tries before the client is told it was not recovered
    fill_attempts: int = 8
    #: seconds between checks of each channel's position against its subscribers' (0: never)
    check_interval: float = 5.0
    #: Engine.IO handshakes in flight (until socket.io-connected, gone, or ``admission_hold``) past which
    #: new ones are refused (503 + Retry-After, close 1013); 0: no bound
    max_handshakes: int = 1000
    #: seconds a handshake may stay in flight at each step before its slot is given back
    admission_hold: float = 5.0
    #: seconds a new connection has to send its first request head (slow-loris bound)
    head_timeout: float = 10.0
