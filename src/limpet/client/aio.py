"""The asyncio client of the limpet hub, on python-socketio's AsyncClient.

One AsyncClient per connection, owned by a supervisor task: python-socketio reconnects by itself
after a network loss but not after the server closed the session (a replica shutting down, an
overflow), and it forgets pending acks on a disconnect. The supervisor reconnects in every case,
with decorrelated-jitter backoff (``limpet.client.backoff``) that honours a hub's "try again
later" (503 + Retry-After, close 1013); on each connection it subscribes every channel again with
``since`` and sends every unacknowledged publish again with its idempotency key.

Every socket.io handler here is a plain function: python-socketio runs each incoming packet in its
own task, in order, and a handler that never awaits keeps messages and acks in wire order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
import socketio
from engineio import payload as eio_payload

from limpet.client.backoff import Backoff
from limpet.client.core import ChannelState, Gap, Message, Position, Presence, State

log = logging.getLogger("limpet.client")

# The hub answers these while its broker is unreachable: worth retrying, not worth failing on.
_TRANSIENT = ("broker unavailable", "internal error")
_RETRY_DELAY = 0.5
# python-engineio's server answers a long-poll with every packet queued for the client, but its
# client refuses a payload of more than ``Payload.max_decode_packets`` (16) packets and drops the
# session ("Unexpected packet from server"): a polling client of a busy channel never keeps one.
# The limit is a class attribute (it guards servers against oversized POSTs); it is raised, once a
# Client exists, to what one poll can carry from the hub: --max-queue packets plus a history page.
_POLL_PACKETS = 2 * 1000 + 64


class ClientError(Exception):
    """The hub refused something (a channel, a publish, the connection), or a limit was hit."""


class PublishTimeout(ClientError):
    """A publish was not acknowledged within ``publish_timeout``; it may or may not be stored."""


@dataclass(frozen=True, slots=True)
class Published:
    """The hub's acknowledgement of a publish."""

    epoch: str
    offset: int
    duplicate: bool = False


@dataclass(eq=False)
class _Pending:
    channel: str
    data: Any
    key: str
    future: asyncio.Future[Published]
    sent_on: int = 0


_END = object()


class Subscription:
    """One channel: an async iterator of ``Message`` (each offset once, in order), ``Gap`` (what
    the hub could not recover; iteration goes on after it) and, with ``presence=True``,
    ``Presence`` events. Also an async context manager: entering waits until subscribed, leaving
    unsubscribes."""

    def __init__(
        self,
        client: Client,
        channel: str,
        position: Position | None,
        presence: bool,
        max_queue: int,
    ) -> None:
        self.client = client
        self.channel = channel
        self.presence = presence
        self.max_queue = max_queue
        self.core = ChannelState(channel, position)
        self.active = True
        self._items: collections.deque[Any] = collections.deque()
        self._wakeup = asyncio.Event()
        self._messages = 0
        self._error: BaseException | None = None
        #: what the application has been given (the core's position runs ahead of the queue)
        self._last_delivered = position
        self.ready: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        # a refusal is also raised by the iterator; don't log it as never retrieved
        self.ready.add_done_callback(lambda f: f.exception())

    def __repr__(self) -> str:
        return f"Subscription(channel={self.channel!r}, state={self.core.state.name}, position={self.position}, queued={len(self._items)})"

    @property
    def position(self) -> Position | None:
        """The last message handed out by the iterator (or the subscribe point): persist it."""
        return self._last_delivered

    async def publish(self, data: Any, *, idempotency_key: str | None = None) -> Published:
        """Publish to this channel (see ``Client.publish``)."""
        return await self.client.publish(self.channel, data, idempotency_key=idempotency_key)

    async def unsubscribe(self) -> None:
        if not self.active:
            return
        self._end(None)
        await self.client._unsubscribe(self)

    async def __aenter__(self) -> Subscription:
        await self.ready
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.unsubscribe()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message | Gap | Presence:
        while not self._items:
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self._items.popleft()
        if item is _END:
            # the end stays in place: every later call ends the same way (a refusal raises;
            # unsubscribe / close end the iteration)
            self._items.appendleft(item)
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        if isinstance(item, Gap):
            self._last_delivered = item.to
        elif isinstance(item, Message):
            self._messages -= 1
            self._last_delivered = item.position
            # fell behind, and room again: ask the hub for the rest from history
            if self.core.state is State.STALLED and self._messages <= self.max_queue // 2:
                self.client._resubscribe(self)
        return item  # type: ignore[no-any-return]

    # --- fed by the client (synchronously, in wire order) ---------------------------------

    def _push(self, item: Any) -> None:
        self._items.append(item)
        self._wakeup.set()

    def _on_message(self, payload: dict[str, Any]) -> bool:
        """Returns True when the hub must be asked again from the position (a hole)."""
        try:
            epoch, offset = payload["epoch"], payload["offset"]
        except (KeyError, TypeError):
            return False
        if self._messages >= self.max_queue:
            self.core.stall()
            return False
        decision = self.core.on_message(epoch, offset)
        if decision.gap is not None:
            self._push(decision.gap)
        if decision.deliver:
            self._messages += 1
            self._push(Message(self.channel, epoch, offset, payload.get("data")))
        return decision.resubscribe

    def _end(self, error: BaseException | None) -> None:
        """No more items: ``error`` is raised by the iterator (None: it just stops)."""
        self.active = False
        self._error = error
        if not self.ready.done():
            self.ready.set_exception(
                error or ClientError(f"subscription to {self.channel} ended before it was ready")
            )
        self._push(_END)


@dataclass
class _Connection:
    """One socket.io connection (a fresh AsyncClient each time)."""

    sio: socketio.AsyncClient
    number: int
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    #: what the hub said when it refused the connection (middleware / auth), if it did
    refused: Any = None


def new_session() -> aiohttp.ClientSession:
    """The HTTP session of a client. Its cookie jar keeps cookies of IP-address hosts too
    (``unsafe=True``): aiohttp's default jar drops them (RFC 6265 §5.1.3 domain matching does not
    apply to IP addresses, and aiohttp refuses them outright), so behind a proxy with cookie
    affinity at ``http://127.0.0.1:8080`` the affinity cookie was never sent back and every
    polling request could land on another replica ("Invalid session")."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


class Client:
    """A connection to a limpet hub (or a proxy in front of its replicas) that keeps every
    subscription and every publish alive across disconnects. Use it as an async context manager."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        auth: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        transports: list[str] | None = None,
        socketio_path: str = "socket.io",
        connect_timeout: float = 10.0,
        reconnection_delay: float = 0.5,
        reconnection_delay_max: float = 5.0,
        publish_timeout: float = 30.0,
        max_pending_publishes: int = 1000,
        max_queue: int = 10_000,
    ) -> None:
        self.url = url
        self.auth = dict(auth or {})
        if token is not None:
            self.auth["token"] = token
        self.headers = headers or {}
        self.transports = transports
        self.socketio_path = socketio_path
        self.connect_timeout = connect_timeout
        self.reconnection_delay = reconnection_delay
        self.reconnection_delay_max = reconnection_delay_max
        self.publish_timeout = publish_timeout
        self.max_pending_publishes = max_pending_publishes
        self.max_queue = max_queue
        self.subscriptions: dict[str, Subscription] = {}
        self.pending: list[_Pending] = []
        self.connections = 0
        self.closed = False
        self._conn: _Connection | None = None
        self._up = asyncio.Event()
        self._failure: ClientError | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._listeners: dict[str, list[Callable[[Any], None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: one HTTP session for every connection, closed with the client (python-engineio would
        #: make one per connection and leave it open when a polling disconnect is cut short)
        self._http: aiohttp.ClientSession | None = None
        if eio_payload.Payload.max_decode_packets < _POLL_PACKETS:
            eio_payload.Payload.max_decode_packets = _POLL_PACKETS

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, connected={self.connected}, connections={self.connections}, channels={sorted(self.subscriptions)})"

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def on(self, event: str, listener: Callable[[Any], None]) -> None:
        """Listen to "connect" {number}, "disconnect" {reason}, "connect_error" {message}."""
        self._listeners.setdefault(event, []).append(listener)

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Start the connection and wait for the first one (``ClientError`` if it cannot be made
        within ``connect_timeout`` or the hub refuses it); later losses are repaired by itself."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(
                self._supervise(), name=f"limpet.client {self.url}"
            )
        supervisor = self._supervisor
        try:
            async with asyncio.timeout(self.connect_timeout):
                await _first(self._up.wait(), asyncio.shield(supervisor))
        except TimeoutError:
            await self.close()
            raise ClientError(
                f"could not connect to {self.url} within {self.connect_timeout} s"
            ) from None
        if self._failure is not None or not self._up.is_set():
            failure = self._failure or ClientError(f"could not connect to {self.url}")
            await self.close()
            raise failure

    def subscribe(
        self,
        channel: str,
        *,
        position: Position | dict[str, Any] | None = None,
        presence: bool = False,
    ) -> Subscription:
        """Subscribe to ``channel`` (from ``position`` if given, e.g. one saved earlier)."""
        if self.closed:
            raise ClientError("client is closed")
        if channel in self.subscriptions:
            raise ClientError(f"already subscribed to {channel}; unsubscribe first")
        sub = Subscription(self, channel, Position.parse(position), presence, self.max_queue)
        self.subscriptions[channel] = sub
        if self._conn is not None:
            self._spawn(self._send_subscribe(self._conn, sub))
        return sub

    async def publish(
        self, channel: str, data: Any, *, idempotency_key: str | None = None
    ) -> Published:
        """Publish ``data``; sent again with the same idempotency key after every reconnect until
        the hub acknowledges it, so it is stored once."""
        if self.closed:
            raise ClientError("client is closed")
        if len(self.pending) >= self.max_pending_publishes:
            raise ClientError(
                f"{len(self.pending)} publishes already wait for the hub (max_pending_publishes)"
            )
        entry = _Pending(
            channel,
            data,
            idempotency_key or secrets.token_hex(16),
            asyncio.get_running_loop().create_future(),
        )
        self.pending.append(entry)
        try:
            if self._conn is not None:
                self._spawn(self._send_publish(self._conn, entry))
            async with asyncio.timeout(self.publish_timeout):
                return await asyncio.shield(entry.future)
        except TimeoutError:
            raise PublishTimeout(
                f"publish to {channel} not acknowledged within {self.publish_timeout} s"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self.pending.remove(entry)

    async def close(self) -> None:
        """Disconnect; pending publishes fail, subscriptions end."""
        if self.closed:
            return
        self.closed = True
        for entry in self.pending:
            if not entry.future.done():
                entry.future.set_exception(ClientError("client closed before the hub acknowledged"))
                entry.future.exception()  # retrieved by publish(); don't warn if not awaited
        for sub in self.subscriptions.values():
            sub._end(None)
        self.subscriptions.clear()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.close()

    # --- the connection ------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supervise(self) -> None:
        backoff = Backoff(self.reconnection_delay, self.reconnection_delay_max)
        while not self.closed:
            self.connections += 1
            if self._http is None:
                self._http = new_session()
            conn = _Connection(
                socketio.AsyncClient(reconnection=False, http_session=self._http), self.connections
            )
            self._wire(conn)
            try:
                await conn.sio.connect(
                    self.url,
                    headers=self.headers,
                    auth=self.auth or None,
                    transports=self.transports,
                    socketio_path=self.socketio_path,
                    wait_timeout=self.connect_timeout,
                )
            except Exception as exc:
                # socketio's ConnectionError, or what python-engineio lets escape when a
                # WebSocket is closed before its OPEN packet (a hub's close 1013)
                await _quietly_disconnect(conn.sio)
                self._emit("connect_error", {"message": str(exc), "data": conn.refused})
                retry_after = _retry_after(conn.refused)
                if conn.refused is not None and retry_after is None:
                    # the hub said no (a bad token): retrying won't help
                    self._fail(ClientError(f"connection refused: {_reason(conn.refused)}"))
                    return
                await asyncio.sleep(backoff.next(retry_after))
                continue
            backoff.reset()
            self._conn = conn
            self._up.set()
            self._emit("connect", {"number": conn.number})
            for sub in list(self.subscriptions.values()):
                self._spawn(self._send_subscribe(conn, sub))
            for entry in list(self.pending):
                self._spawn(self._send_publish(conn, entry))
            try:
                await conn.closed.wait()
            finally:
                self._conn = None
                for sub in self.subscriptions.values():
                    sub.core.disconnect()
                await _quietly_disconnect(conn.sio)
            if not self.closed:
                await asyncio.sleep(backoff.first())  # spread a thundering herd

    def _wire(self, conn: _Connection) -> None:
        sio = conn.sio
        sio.on("connect_error", partial(self._on_connect_error, conn))
        sio.on("disconnect", partial(self._on_disconnect, conn))
        sio.on("message", partial(self._on_message, conn))
        sio.on("recovery", partial(self._on_recovery, conn))
        sio.on("join", partial(self._on_presence, conn, "join"))
        sio.on("leave", partial(self._on_presence, conn, "leave"))
        sio.on("overflow", partial(self._on_overflow, conn))

    def _on_connect_error(self, conn: _Connection, data: Any = None, *more: Any) -> None:
        # python-socketio reports a network failure as a string and the server's refusal (a
        # CONNECT_ERROR packet) as its payload, an object
        if isinstance(data, dict):
            conn.refused = data

    def _on_disconnect(self, conn: _Connection, reason: Any = None) -> None:
        if not conn.closed.is_set():
            conn.closed.set()
            self._emit("disconnect", {"reason": str(reason)})

    def _on_overflow(self, conn: _Connection, payload: Any = None) -> None:
        log.warning("hub disconnects this client: %s", payload)

    def _on_message(self, conn: _Connection, payload: Any) -> None:
        if self._conn is not conn or not isinstance(payload, dict):
            return
        sub = self.subscriptions.get(payload.get("channel"))  # type: ignore[arg-type]
        if sub is not None and sub._on_message(payload):
            self._spawn(self._send_subscribe(conn, sub))

    def _on_recovery(self, conn: _Connection, payload: Any) -> None:
        if self._conn is not conn or not isinstance(payload, dict):
            return
        sub = self.subscriptions.get(payload.get("channel"))  # type: ignore[arg-type]
        if sub is None:
            return
        with contextlib.suppress(KeyError, TypeError):
            gap = sub.core.on_recovery(payload["epoch"], payload["offset"])
            if gap is not None:
                sub._push(gap)

    def _on_presence(self, conn: _Connection, kind: str, payload: Any) -> None:
        if self._conn is not conn or not isinstance(payload, dict):
            return
        sub = self.subscriptions.get(payload.get("channel"))  # type: ignore[arg-type]
        if sub is not None and sub.presence and len(sub._items) < 2 * self.max_queue:
            sub._push(
                Presence(
                    kind,
                    sub.channel,
                    str(payload.get("client")),
                    payload.get("user"),
                    payload.get("replica"),
                )
            )

    def _resubscribe(self, sub: Subscription) -> None:
        if self._conn is not None:
            self._spawn(self._send_subscribe(self._conn, sub))

    async def _send_subscribe(self, conn: _Connection, sub: Subscription) -> None:
        if not sub.active or self._conn is not conn:
            return
        token, since = sub.core.subscribe()
        payload: dict[str, Any] = {"channel": sub.channel}
        if since is not None:
            payload["since"] = since.as_dict()
        if sub.presence:
            payload["presence"] = True
        with contextlib.suppress(socketio.exceptions.SocketIOError):
            await conn.sio.emit(
                "subscribe", payload, callback=partial(self._on_subscribed, conn, sub, token)
            )

    def _on_subscribed(
        self, conn: _Connection, sub: Subscription, token: int, ack: Any = None
    ) -> None:
        if not sub.active or self._conn is not conn or not isinstance(ack, dict):
            return
        error = ack.get("error")
        if error is not None:
            if str(error).startswith(_TRANSIENT) and sub.core.token == token:
                self._spawn(self._later(_RETRY_DELAY, self._send_subscribe(conn, sub)))
                return
            self.subscriptions.pop(sub.channel, None)
            sub._end(ClientError(f"subscribe {sub.channel}: {error}"))
            return
        try:
            stale, gap = sub.core.on_ack(token, ack["epoch"], ack["offset"], bool(ack["recovered"]))
        except (KeyError, TypeError):
            return
        if stale:
            return
        if gap is not None:
            sub._push(gap)
        if not sub.ready.done():
            if gap is None:
                sub._last_delivered = sub.core.position
            sub.ready.set_result(sub.core.position)  # type: ignore[arg-type]

    async def _send_publish(self, conn: _Connection, entry: _Pending) -> None:
        if entry.future.done() or self._conn is not conn or entry.sent_on == conn.number:
            return
        entry.sent_on = conn.number
        payload = {"channel": entry.channel, "data": entry.data, "idempotency_key": entry.key}
        with contextlib.suppress(socketio.exceptions.SocketIOError):
            await conn.sio.emit(
                "publish", payload, callback=partial(self._on_published, conn, entry)
            )

    def _on_published(self, conn: _Connection, entry: _Pending, ack: Any = None) -> None:
        if entry.future.done() or self._conn is not conn or not isinstance(ack, dict):
            return
        error = ack.get("error")
        if error is not None:
            if str(error).startswith(_TRANSIENT):
                entry.sent_on = 0
                self._spawn(self._later(_RETRY_DELAY, self._send_publish(conn, entry)))
            else:
                entry.future.set_exception(ClientError(f"publish to {entry.channel}: {error}"))
            return
        try:
            entry.future.set_result(
                Published(ack["epoch"], ack["offset"], bool(ack.get("duplicate")))
            )
        except KeyError:
            entry.future.set_exception(
                ClientError(f"publish to {entry.channel}: malformed ack {ack!r}")
            )

    async def _unsubscribe(self, sub: Subscription) -> None:
        if self.subscriptions.get(sub.channel) is not sub:
            return
        del self.subscriptions[sub.channel]
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(socketio.exceptions.SocketIOError):
                await conn.sio.emit("unsubscribe", {"channel": sub.channel})

    def _fail(self, error: ClientError) -> None:
        self._failure = error
        for sub in list(self.subscriptions.values()):
            sub._end(error)
        self.subscriptions.clear()
        for entry in self.pending:
            if not entry.future.done():
                entry.future.set_exception(error)

    def _emit(self, event: str, info: Any) -> None:
        for listener in self._listeners.get(event, []):
            try:
                listener(info)
            except Exception:
                log.exception("a %r listener failed", event)

    @staticmethod
    async def _later(delay: float, coro: Any) -> None:
        await asyncio.sleep(delay)
        await coro


async def _first(*aws: Any) -> None:
    """Wait until the first of ``aws`` finishes; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


async def _quietly_disconnect(sio: socketio.AsyncClient) -> None:
    # python-engineio's polling transport waits for its pending long-poll on disconnect; the
    # close packet goes out at once, so don't wait for the rest.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(sio.disconnect(), 1.0)


def _retry_after(data: Any) -> float | None:
    """A hub's "try again later" (its 503 body ``{"error": ..., "retry_after": N}``): N."""
    value = data.get("retry_after") if isinstance(data, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _reason(data: Any) -> str:
    """The hub's words when it refused a connection: ``{"error": ...}`` or ``{"message": ...}``."""
    if isinstance(data, dict):
        inner = data.get("error") or data.get("message")
        return _reason(inner) if inner is not None else str(data)
    return str(data)
