"""The hub's socket.io server (python-socketio on aiohttp, Engine.IO v4); the HTTP API is
``limpet.hub.http_api``.

Decisions (offsets, recovery, the live/history seam) live in ``limpet.hub.channels``; this module
moves bytes between socket.io clients, the HTTP API and the broker.

Fan-out encodes each message once per replica: the socket.io packet is built once and the same
Engine.IO packet object is put, synchronously, into every receiving client's Engine.IO send queue
(the queue python-engineio's writer drains). One synchronous put per client keeps the order of a
channel identical for every client, with no per-client task, and the queue length is a client's
backlog: past ``max_queue`` the client is disconnected and recovers with ``since``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web

from limpet.errors import BrokerError, ChannelError
from limpet.hub import transport
from limpet.hub.access import AuthError, error, granted, verify_token
from limpet.hub.admission import Admission
from limpet.hub.brokers.base import Broker
from limpet.hub.channels import (
    Envelope,
    HistoryPage,
    Message,
    Position,
    PresenceEvent,
    SeamState,
    Subscription,
    validate_channel,
)
from limpet.hub.channels.outbox import Outbox, Verdict
from limpet.hub.channels.payload import check_offset, encode_checked
from limpet.hub.channels.recovery import Step
from limpet.hub.fragments import UnfinishedBudget
from limpet.hub.http_api import TICKET, HttpApi, HttpError, admission_gate, errors_as_json
from limpet.hub.notifier import EventSink
from limpet.hub.policy import ClientState, Policy, Refused
from limpet.hub.settings import HubSettings
from limpet.hub.transport import Packet
from limpet.runtime import serve_aiohttp

log = logging.getLogger("limpet.hub")


@dataclass(slots=True)
class Client:
    """One connected socket.io client: identity, subscriptions and its outbound queue."""

    sid: str
    user: str
    claims: dict[str, Any]
    #: the policy's state of this client (identity, hook grants, rate buckets)
    state: ClientState
    subs: dict[str, Subscription] = field(default_factory=dict)
    filling: set[str] = field(default_factory=set)
    #: channels whose join/leave events this client asked for (subscribe with presence: true)
    presence: set[str] = field(default_factory=set)
    #: the Engine.IO socket packets are queued on (looked up on first use)
    socket: Any = None
    #: holds (a subscribe ack goes out first), the bound on live packets, overflow
    outbox: Outbox[Packet] = field(default_factory=lambda: Outbox(1000))
    #: the last publish of this client still going through a publish hook: the next one is
    #: stored after it, so the application's answers cannot reorder a client's messages
    publishing: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"Client(sid={self.sid!r}, user={self.user!r}, channels={sorted(self.subs)})"


class Hub:
    """A hub replica: socket.io events + HTTP API on top of one broker."""

    def __init__(
        self,
        broker: Broker,
        settings: HubSettings,
        policy: Policy | None = None,
        events: EventSink | None = None,
    ) -> None:
        self.broker = broker
        self.settings = settings
        #: channel events for the application (``limpet.hub.notifier``; default: none)
        self.events = events or EventSink()
        #: namespaces, per-client limits and the application's hooks, consulted at connect,
        #: subscribe, publish and rpc (``limpet.hub.policy``)
        self.policy = policy or Policy()
        self.clients: dict[str, Client] = {}
        #: channel -> sids of local clients subscribed to it (the routing the broker follows)
        self.local: dict[str, set[str]] = {}
        #: channel -> sids of local clients that asked for its join/leave events
        self.watchers: dict[str, set[str]] = {}
        self.admission = Admission(settings.max_handshakes, hold=settings.admission_hold)
        self.unfinished = UnfinishedBudget(settings.max_unfinished)
        self.sio = transport.HubServer(
            async_mode="aiohttp",
            cors_allowed_origins=settings.cors_origins,
            # Read payloads well over the limit so they get an error ack rather than a dropped
            # connection; Engine.IO still caps the rest (the connection is closed).
            max_http_buffer_size=max(settings.max_message, 4 * settings.max_payload),
            serializer=transport.packet_class(settings.max_depth),
            client_manager=transport.HubManager(),
            # their own loggers under ours: python-engineio adds a second handler to its
            # default logger, and "Invalid session" was printed twice
            logger=logging.getLogger("limpet.hub.socketio"),
            engineio_logger=logging.getLogger("limpet.hub.engineio"),
        )
        if not settings.ws_compression:
            transport.disable_ws_compression(self.sio)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        #: channel -> the broker subscribe in flight: later subscribers wait for the same one
        self._routing: dict[str, asyncio.Future[None]] = {}
        #: channels the broker confirmed it routes here
        self._routed: set[str] = set()
        #: channel -> the last live message this replica received (the position check)
        self._received: dict[str, Position] = {}
        broker.on_envelope = self._on_envelope
        broker.on_resync = self._on_resync
        self._register()

    def __repr__(self) -> str:
        return f"Hub(name={self.settings.name!r}, clients={len(self.clients)}, channels={len(self.local)}, broker={self.broker!r})"

    # --- lifecycle -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=max(1 << 20, 4 * self.settings.max_payload),
            middlewares=[
                errors_as_json,
                admission_gate(self.admission, "socket.io", self.settings.cors_origins),
                self._anonymous_reads,
            ],
        )
        self.sio.attach(app, socketio_path="socket.io")
        HttpApi(self.settings, self.broker, self._publish, self._health).add_routes(app)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        app.on_response_prepare.append(self._name_header)
        return app

    @web.middleware
    async def _anonymous_reads(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """HTTP reads (history, presence) of a namespace with ``anonymous-read: false`` need an
        identity: a JWT (``--jwt-secret``; the API checks it). Without one they are refused."""
        channel = request.match_info.get("channel")
        if (
            request.method == "GET"
            and channel
            and not self.policy.namespace(channel).anonymous_read
            and not (
                self.settings.jwt_secret is not None
                and ("Authorization" in request.headers or "token" in request.query)
            )
        ):
            raise HttpError(401, f"reading {channel!r} needs an identity (anonymous reads are off)")
        response: web.StreamResponse = await handler(request)
        return response

    async def _name_header(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every answer names its replica, as `limpet whoami` does, so `limpet check` can."""
        if self.settings.name.isascii() and self.settings.name.isprintable():  # a header value
            response.headers["X-Backend"] = self.settings.name

    async def _startup(self, app: web.Application) -> None:
        await self.broker.start()
        await self.events.start()
        self._heartbeat = asyncio.create_task(self._presence_heartbeat())
        if self.settings.check_interval > 0:
            self._checker = asyncio.create_task(self._check_positions())

    async def _shutdown(self, app: web.Application) -> None:
        for task in (self._heartbeat, self._checker):
            if task is not None:
                task.cancel()
        for sid in list(self.clients):
            await self._drop_client(sid)
        await self.sio.shutdown()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.policy.close()
        await self.events.close()
        await self.broker.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- socket.io events ------------------------------------------------------------------

    def _register(self) -> None:
        sio = self.sio
        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        sio.on("subscribe", self._guard(self.on_subscribe))
        sio.on("unsubscribe", self._guard(self.on_unsubscribe))
        sio.on("publish", self._guard(self.on_publish))  # what ``inline`` does not take
        sio.inline["publish"] = self._publish_inline
        sio.on("presence", self._guard(self.on_presence))
        sio.on("rpc", self._guard(self.on_rpc))
        sio.on(transport.BAD_PACKET_EVENT, self.on_bad_packet)
        sio.on("*", self.on_unknown)

    def _guard(self, handler: Any) -> Any:
        """Turn every failure of a handler into an error ack; a bad client never crashes us."""

        async def guarded(sid: str, data: Any = None, *extra: Any) -> Any:
            try:
                client = self.clients.get(sid)
                if client is None:
                    return error("not connected")
                if extra:
                    return error("one payload object expected")
                if not isinstance(data, dict):
                    return error("payload must be an object")
                return await handler(client, data)
            except Exception as exc:  # the replica stays up whatever a client sends
                return _failure(sid, exc)

        return guarded

    def _publish_inline(self, sid: str, ack_id: int | None, args: list[Any]) -> None:
        """``publish`` straight from the connection's reader (see ``transport.HubServer``):
        checked now, handed to the broker, acknowledged from the broker's answer. The same
        checks and answers as ``on_publish`` behind ``_guard``."""
        try:
            client = self.clients.get(sid)
            if client is None:
                answer = error("not connected")
            elif len(args) > 1:
                answer = error("one payload object expected")
            elif not args or not isinstance(args[0], dict):
                answer = error("payload must be an object")
            else:
                channel, data, key = self._check_publish(client, args[0])
                hook = self.policy.publish_hook(self.policy.namespace(channel))
                if hook is not None:  # the application sees (and may change) it first
                    self._spawn(self._publish_hooked(client, ack_id, channel, data, key))
                    return
                pending = self.broker.publish_soon(channel, data, idempotency_key=key)
                pending.add_done_callback(
                    functools.partial(self._published, client, ack_id, channel, data)
                )
                return
        except Exception as exc:
            answer = _failure(sid, exc)
        self._ack(sid, ack_id, answer)

    async def _publish_hooked(
        self, client: Client, ack_id: int | None, channel: str, data: Any, key: str | None
    ) -> None:
        try:
            answer = _publish_ack(*await self._publish_client(client, channel, data, key))
        except Exception as exc:
            answer = _failure(client.sid, exc)
        self._ack(client.sid, ack_id, answer)

    async def _publish_client(
        self, client: Client, channel: str, data: Any, key: str | None
    ) -> tuple[Position, bool]:
        """A checked client publish, through the namespace's publish hook if it has one."""
        ns = self.policy.namespace(channel)
        hook = self.policy.publish_hook(ns)
        if hook is None:
            position, duplicate = await self.broker.publish(channel, data, idempotency_key=key)
            self._publish_event(channel, data, position, duplicate, client)
            return position, duplicate
        previous, done = client.publishing, asyncio.get_running_loop().create_future()
        client.publishing = done
        try:
            # the hook calls of one client's publishes run side by side; they are stored in
            # the order the client sent them
            data = await self.policy.change_publish(hook, client.state, channel, data, ns)
            self._check_data(data, None)  # what the application put in is bounded too
            if previous is not None:
                await asyncio.shield(previous)
            position, duplicate = await self.broker.publish(channel, data, idempotency_key=key)
        finally:
            try:
                if previous is not None and not previous.done():
                    await asyncio.shield(previous)  # a refused one still answers in its turn
            finally:
                done.set_result(None)
                if client.publishing is done:
                    client.publishing = None
        self._publish_event(channel, data, position, duplicate, client)
        return position, duplicate

    def _published(
        self,
        client: Client,
        ack_id: int | None,
        channel: str,
        data: Any,
        pending: asyncio.Future[tuple[Position, bool]],
    ) -> None:
        if pending.cancelled():
            answer = error("publish cancelled")
        elif (exc := pending.exception()) is not None:
            answer = _failure(client.sid, exc)
        else:
            position, duplicate = pending.result()
            self._publish_event(channel, data, position, duplicate, client)
            answer = _publish_ack(position, duplicate)
        self._ack(client.sid, ack_id, answer)

    def _publish_event(
        self, channel: str, data: Any, position: Position, duplicate: bool, client: Client | None
    ) -> None:
        if duplicate:
            return
        who = {} if client is None else {"client": client.sid, "user": client.user}
        self.events.emit(
            "publish", channel, epoch=position.epoch, offset=position.offset, data=data, **who
        )

    def _ack(self, sid: str, ack_id: int | None, answer: dict[str, Any]) -> None:
        if ack_id is None:
            return
        packet = transport.ack_packet(ack_id, answer)
        client = self.clients.get(sid)
        if client is not None:
            self._put(client, packet, bounded=False)
            return
        socket = transport.find_socket(self.sio, sid)  # "not connected": answered all the same
        if socket is not None and transport.is_open(socket):
            transport.enqueue(socket, packet)

    async def on_unknown(self, event: str, sid: str, *args: Any) -> dict[str, str]:
        return error(f"unknown event {event!r}")

    async def on_bad_packet(self, sid: str, reason: Any = None, *args: Any) -> dict[str, str]:
        return error(str(reason))

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        request = environ.get("aiohttp.request")
        ticket: int | None = request.get(TICKET) if request is not None else None
        try:
            await self._connect(sid, environ, auth)
        finally:  # connected or refused: its handshake is over (see limpet.hub.admission)
            if ticket is not None:
                self.admission.done(ticket)

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        claims: dict[str, Any] = {}
        if self.settings.jwt_secret is not None:
            token = auth.get("token") if isinstance(auth, dict) else None
            if not token:
                token = _query_token(environ.get("QUERY_STRING", ""))
            try:
                claims = self.verify(token)
            except AuthError as exc:
                raise socketio.exceptions.ConnectionRefusedError(error(str(exc))) from None
        subject = claims.get("sub")
        try:
            state = await self.policy.connect(
                sid, environ, auth, None if subject is None else str(subject)[:128]
            )
        except Refused as exc:  # message + data, as socket.io's connect_error carries them
            raise socketio.exceptions.ConnectionRefusedError(
                str(exc), error(str(exc), exc.code)
            ) from None
        user = state.user
        if state.anonymous and isinstance(auth, dict) and auth.get("user"):
            user = str(auth["user"])[:128]  # a name to show, not an identity
        self.clients[sid] = Client(sid, user, claims, state, outbox=Outbox(self.settings.max_queue))
        transport.adopt_socket(self.sio, sid)

    async def on_disconnect(self, sid: str, *reason: Any) -> None:
        await self._drop_client(sid)

    async def on_subscribe(self, client: Client, data: dict[str, Any]) -> dict[str, Any]:
        channel = validate_channel(data.get("channel"))
        if not granted(client.claims, "channels", channel):
            raise AuthError(f"token does not grant subscribe to {channel!r}")
        since = _parse_since(data.get("since"))
        presence = data.get("presence", False)
        if not isinstance(presence, bool):
            raise ChannelError("presence must be true or false")
        ns = self.policy.admit_subscribe(client.state, channel, client.subs)
        if presence and not (ns.presence and ns.join_leave):
            raise ChannelError(f"join/leave events are off for {channel!r}")
        if ns.max_subscribers and channel not in client.subs:
            members = await self.broker.presence(channel)
            if len(members) >= ns.max_subscribers:
                raise ChannelError(f"channel full: {ns.max_subscribers} subscribers")
        grant = await self.policy.authorize_subscribe(client.state, channel, ns)
        if client.sid not in self.clients:
            return error("not connected")
        if grant.info:
            client.state.channel_info[channel] = grant.info
        if channel in client.subs:
            self._detach(client, channel)
        sub = Subscription(channel, since, max_buffer=self.settings.max_queue)
        # Live first, then history: whatever is published in between is buffered by the seam.
        client.subs[channel] = sub
        if presence:
            client.presence.add(channel)
            self.watchers.setdefault(channel, set()).add(client.sid)
        self.local.setdefault(channel, set()).add(client.sid)
        try:
            # Every subscriber waits until the broker routes the channel here: reading history
            # before that could miss what is published in between, with nothing to show it.
            await self._route(channel)
            page = await self._join_and_read(
                client, channel, sub.fetch_since if since is not None else None
            )
        except BaseException:
            if client.subs.get(channel) is sub:
                self._detach(client, channel)
                await self._unroute(channel)
            raise
        if client.subs.get(channel) is not sub:
            return error("unsubscribed while subscribing")
        step = sub.on_history(page)
        assert step.recovery is not None
        # The ack must precede the recovered messages. python-socketio queues it right after we
        # return, with no suspension in between; until then (the call_soon below runs after
        # it) this client's packets are held, live ones included, and released in order.
        client.outbox.hold()
        asyncio.get_running_loop().call_soon(self._release, client)
        self._apply(client, sub, step, report=False)
        position = step.recovery.position
        return {
            "channel": channel,
            "epoch": position.epoch,
            "offset": position.offset,
            "recovered": step.recovery.recovered,
        }

    async def _route(self, channel: str) -> None:
        """Have the broker deliver ``channel`` here; one broker subscribe per channel, awaited
        by every client subscribing meanwhile. A failure fails all of them (error acks)."""
        if channel in self._routed:
            return
        pending = self._routing.get(channel)
        if pending is None:
            pending = asyncio.ensure_future(self._broker_subscribe(channel))
            self._routing[channel] = pending
            # retrieved here (so never "never retrieved"); every waiter re-raises it
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())
        await asyncio.shield(pending)

    async def _broker_subscribe(self, channel: str) -> None:
        try:
            await self.broker.subscribe(channel)
        finally:
            del self._routing[channel]
        self._routed.add(channel)
        await self._unroute(channel)  # in case everyone left meanwhile

    async def _unroute(self, channel: str) -> None:
        """Stop the broker routing ``channel`` here once no local client is in it (a subscribe
        in flight does this itself when it completes)."""
        if channel in self.local or channel in self._routing:
            return
        self._routed.discard(channel)
        self._received.pop(channel, None)
        with contextlib.suppress(Exception):
            await self.broker.unsubscribe(channel)

    def _member(self, client: Client, channel: str) -> dict[str, Any]:
        """A subscriber's presence entry: who, where, and what the hooks said about it."""
        member: dict[str, Any] = {"user": client.user, "replica": self.settings.name}
        info = {**client.state.info, **client.state.channel_info.get(channel, {})}
        if info:
            member["info"] = info
        return member

    async def _join_and_read(self, client: Client, channel: str, since: int | None) -> HistoryPage:
        """Presence of a new subscriber (``_join``), then the history read; with presence on
        and no occupancy events, the broker does both in one round trip (``join_and_read``)."""
        limit = self.settings.history_limit
        if self.events.occupancy or not self.policy.namespace(channel).presence:
            await self._join(client, channel)
            return await self.broker.history(channel, since, limit)
        member = self._member(client, channel)
        join = PresenceEvent(channel, "join", client.sid, member)
        page, joined, failure = await self.broker.join_and_read(
            channel, {client.sid: member}, join, since, limit
        )
        if joined:
            self.events.emit("join", channel, client=client.sid, user=client.user, info=member)
        if failure is not None:
            log.warning(
                "presence of %s in %s deferred to the heartbeat: %s", client.sid, channel, failure
            )
        return page

    async def _join(self, client: Client, channel: str) -> None:
        """Presence of a new subscriber. Not part of delivery: a broker failure here is logged
        and the heartbeat writes it again within ttl/3."""
        if not self.policy.namespace(channel).presence:
            return
        member = self._member(client, channel)
        try:
            if self.events.occupancy:  # the broker tells whether this is the first member
                occupied = await self.broker.presence_join(channel, client.sid, member)
            else:
                await self.broker.presence_touch(channel, {client.sid: member})
                occupied = False
            if occupied:
                self.events.emit("occupied", channel)
            self.events.emit("join", channel, client=client.sid, user=client.user, info=member)
            await self.broker.announce(channel, PresenceEvent(channel, "join", client.sid, member))
        except BrokerError as exc:
            log.warning(
                "presence of %s in %s deferred to the heartbeat: %s", client.sid, channel, exc
            )

    async def on_unsubscribe(self, client: Client, data: dict[str, Any]) -> dict[str, Any]:
        channel = validate_channel(data.get("channel"))
        if channel not in client.subs:
            return error(f"not subscribed to {channel!r}")
        await self._leave(client, channel)
        return {"channel": channel}

    async def on_publish(self, client: Client, data: dict[str, Any]) -> dict[str, Any]:
        channel, payload, key = self._check_publish(client, data)
        return _publish_ack(*await self._publish_client(client, channel, payload, key))

    async def on_rpc(self, client: Client, data: dict[str, Any]) -> dict[str, Any]:
        """``rpc`` {"method": M, "data": D}: answered by the application (``URL/rpc``)."""
        method = data.get("method")
        if not isinstance(method, str) or not 0 < len(method) <= 128:
            raise ChannelError("rpc needs a method: a string of 1..128 characters")
        payload = data.get("data")
        self._check_data(payload, None)
        return {"data": await self.policy.rpc(client.state, method, payload)}

    def _check_publish(self, client: Client, data: dict[str, Any]) -> tuple[str, Any, str | None]:
        """A socket.io publish's channel, data and idempotency key, checked."""
        channel = validate_channel(data.get("channel"))
        if not granted(client.claims, "publish", channel):
            raise AuthError(f"token does not grant publish to {channel!r}")
        self.policy.admit_publish(client.state, channel)
        if "data" not in data:
            raise ChannelError("publish needs a 'data' field")
        key = self._check_data(data["data"], data.get("idempotency_key"))
        return channel, data["data"], key

    async def on_presence(self, client: Client, data: dict[str, Any]) -> dict[str, Any]:
        channel = validate_channel(data.get("channel"))
        if not granted(client.claims, "channels", channel):
            raise AuthError(f"token does not grant {channel!r}")
        return {"channel": channel, "clients": await self.broker.presence(channel)}

    # --- shared paths ------------------------------------------------------------------------

    def verify(self, token: Any) -> dict[str, Any]:
        return verify_token(
            token, self.settings.jwt_secret, require_exp=self.settings.jwt_require_exp
        )

    def _health(self) -> dict[str, Any]:
        return {
            "name": self.settings.name,
            "clients": len(self.clients),
            "channels": len(self.local),
            "admission": self.admission.snapshot(time.monotonic()),
            "unfinished": self.unfinished.snapshot(),
            **self.events.stats(),
            **self.policy.stats(),
        }

    async def _publish(
        self, channel: str, data: Any, idempotency_key: Any
    ) -> tuple[Position, bool]:
        key = self._check_data(data, idempotency_key)
        position, duplicate = await self.broker.publish(channel, data, idempotency_key=key)
        self._publish_event(channel, data, position, duplicate, None)
        return position, duplicate

    def _check_data(self, data: Any, idempotency_key: Any) -> str | None:
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 128
        ):
            raise ChannelError("idempotency_key must be a string of 1..128 characters")
        encode_checked(data, max_depth=self.settings.max_depth, max_bytes=self.settings.max_payload)
        return idempotency_key

    async def _leave(self, client: Client, channel: str) -> None:
        self._detach(client, channel)
        client.state.channel_info.pop(channel, None)
        if not self.policy.namespace(channel).presence:
            await self._unroute(channel)
            return
        with contextlib.suppress(BrokerError):
            if self.events.occupancy:
                vacated = await self.broker.presence_leave(channel, client.sid)
            else:
                await self.broker.presence_remove(channel, client.sid)
                vacated = False
            self.events.emit("leave", channel, client=client.sid, user=client.user)
            if vacated:
                self.events.emit("vacated", channel)
            await self.broker.announce(
                channel, PresenceEvent(channel, "leave", client.sid, {"user": client.user})
            )
        await self._unroute(channel)

    def _detach(self, client: Client, channel: str) -> None:
        client.subs.pop(channel, None)
        if channel in client.presence:
            client.presence.discard(channel)
            watchers = self.watchers.get(channel)
            if watchers is not None:
                watchers.discard(client.sid)
                if not watchers:
                    del self.watchers[channel]
        sids = self.local.get(channel)
        if sids is not None:
            sids.discard(client.sid)
            if not sids:
                del self.local[channel]

    async def _drop_client(self, sid: str) -> None:
        client = self.clients.pop(sid, None)
        if client is None:
            return
        for channel in list(client.subs):
            await self._leave(client, channel)

    # --- delivery ------------------------------------------------------------------------------

    def _on_envelope(self, record: Envelope) -> None:
        if isinstance(record, Message):
            sids = self.local.get(record.channel)
            if not sids:
                return
            position = Position(record.epoch, record.offset)
            self._received[record.channel] = position
            packet = None
            clients = self.clients
            for sid in list(sids):
                client = clients.get(sid)
                if client is None:
                    continue
                sub = client.subs.get(record.channel)
                if sub is None:
                    continue
                if sub.advance(record, position):  # the common case: next offset, in order
                    if packet is None:
                        packet = _message_packet(record)
                    self._put(client, packet)
                else:
                    self._apply(client, sub, sub.on_live(record))
            return
        watchers = self.watchers.get(record.channel)
        if not watchers:
            return
        event = "join" if record.action == "join" else "leave"
        try:
            packet = _packet(
                event, {"channel": record.channel, "client": record.client, **record.info}
            )
        except (RecursionError, ValueError, TypeError) as exc:
            log.warning("dropping a presence event of %s: %s", record.channel, exc)
            return
        for sid in list(watchers):
            client = self.clients.get(sid)
            if client is not None and sid != record.client:
                self._put(client, packet)

    def _on_resync(self) -> None:
        for client in list(self.clients.values()):
            for sub in list(client.subs.values()):
                self._apply(client, sub, sub.resync())

    def _apply(
        self,
        client: Client,
        sub: Subscription,
        step: Step,
        *,
        report: bool = True,
        fill: bool = True,
    ) -> None:
        # the notice first: it says where the client now is, and the messages continue from it
        if report and step.recovery is not None and not step.recovery.recovered:
            position = step.recovery.position
            self._put(client, _recovery_packet(sub.channel, position), bounded=False)
        for message in step.deliver:
            self._put(client, _message_packet(message), bounded=False)
        if fill and step.fetch_since is not None and sub.channel not in client.filling:
            client.filling.add(sub.channel)
            self._spawn(self._fill(client, sub))

    async def _fill(self, client: Client, sub: Subscription) -> None:
        """Fetch history until the subscription's gap is closed (or it is gone). While the broker
        is unreachable, retry with a capped backoff, at most ``fill_attempts`` times; then the
        client is told the gap was not filled and is unsubscribed (see ``_give_up``)."""
        failures = 0
        try:
            while client.subs.get(sub.channel) is sub and self.clients.get(client.sid) is client:
                if failures >= self.settings.fill_attempts:
                    self._give_up(client, sub)
                    return
                if failures:
                    await asyncio.sleep(min(2.0, 0.05 * 2**failures))
                try:
                    page = await self.broker.history(
                        sub.channel, sub.fetch_since, self.settings.history_limit
                    )
                except BrokerError as exc:
                    failures += 1
                    log.warning("history of %s failed (%s); retrying", sub.channel, exc)
                    continue
                except Exception:
                    failures += 1
                    log.exception("history of %s failed; retrying", sub.channel)
                    continue
                if client.subs.get(sub.channel) is not sub:
                    return
                failures = 0
                step = sub.on_history(page)
                self._apply(client, sub, step, fill=False)
                if step.fetch_since is None:
                    return
        finally:
            client.filling.discard(sub.channel)

    def _give_up(self, client: Client, sub: Subscription) -> None:
        """A gap that history cannot fill now: say so (``recovery`` with ``recovered: false``
        and ``subscribed: false`` at the last position delivered) and end the subscription, so
        nothing arrives past the gap; the client subscribes again with that position as since."""
        position = sub.position or sub.since or Position("", 0)
        log.warning("%s: gap in %s not filled; unsubscribed", client.sid, sub.channel)
        self._put(client, _recovery_packet(sub.channel, position, subscribed=False), bounded=False)
        if client.subs.get(sub.channel) is sub:
            self._spawn(self._leave(client, sub.channel))

    async def _check_positions(self) -> None:
        """Every ``check_interval``, read each local channel's position from the broker, once
        per channel. When this replica's live stream of the channel made no progress for a whole
        round, a live subscriber still behind the position read one round earlier lost the tail
        of its stream (a message the live path dropped and nothing followed): it is re-synced
        from history. A replica that is merely behind (busy, messages still in flight) keeps
        making progress and is left alone."""
        previous: dict[str, Position] = {}
        progress: dict[str, Position | None] = {}
        while True:
            await asyncio.sleep(self.settings.check_interval)
            current: dict[str, Position] = {}
            received = {c: self._received.get(c) for c in self.local}
            for channel in list(self.local):
                try:
                    page = await self.broker.history(channel, None, 0)
                except BrokerError as exc:
                    log.warning("position check of %s failed: %s", channel, exc)
                    continue
                except Exception:
                    log.exception("position check of %s failed", channel)
                    continue
                current[channel] = page.position
                seen = previous.get(channel)
                stalled = channel in progress and progress[channel] == received.get(channel)
                if seen is not None and stalled:
                    self._catch_up(channel, seen, page.position)
            previous, progress = current, received

    def _catch_up(self, channel: str, seen: Position, now: Position) -> None:
        for sid in list(self.local.get(channel, ())):
            client = self.clients.get(sid)
            sub = client.subs.get(channel) if client is not None else None
            if client is None or sub is None or sub.position is None:
                continue
            if sub.state is not SeamState.LIVE or channel in client.filling:
                continue
            mine = sub.position
            if mine.epoch == seen.epoch:
                behind = mine.offset < seen.offset
            else:  # on another epoch than the channel's, which has stayed put for a round
                behind = seen.epoch == now.epoch
            if behind:
                log.warning("%s is behind in %s (%s < %s): re-sync", sid, channel, mine, seen)
                self._apply(client, sub, sub.resync())

    def _put(self, client: Client, packet: Packet, *, bounded: bool = True) -> None:
        """Queue one packet for ``client``, synchronously, in call order (see the module doc).
        ``bounded`` packets (live ones) disconnect a client whose queue is full."""
        socket = client.socket
        if socket is None:
            socket = client.socket = transport.find_socket(self.sio, client.sid)
            if socket is None:
                return  # not connected (any more); disconnect cleans up
        if bounded and client.outbox.clear and transport.push_live(socket, packet):
            return  # what ``offer`` would say (SEND, no change) and ``enqueue`` would do
        if not transport.is_open(socket):
            return
        verdict = client.outbox.offer(packet, bounded=bounded, queued=transport.queued(socket))
        if verdict is Verdict.SEND:
            transport.enqueue(socket, packet)
        elif verdict is Verdict.OVERFLOW:
            self._overflow(client, socket)

    def _release(self, client: Client) -> None:
        for packet, bounded in client.outbox.release():
            self._put(client, packet, bounded=bounded)

    def _overflow(self, client: Client, socket: Any) -> None:
        """The client cannot keep up: drop its backlog, say why, and disconnect it. What it
        missed is in history; it gets it back by re-subscribing with ``since``."""
        queued = transport.drop_queued(socket)
        reason = (
            f"slow consumer: {queued} packets queued (limit {self.settings.max_queue}); "
            "reconnect and subscribe with since"
        )
        log.warning("disconnecting %s: %s", client.sid, reason)
        transport.enqueue(socket, _packet("overflow", {"reason": reason}))
        self._spawn(self._disconnect(client.sid, transport.eio_sid(socket)))

    async def _disconnect(self, sid: str, eio_sid: str) -> None:
        with contextlib.suppress(Exception):
            await self.sio.disconnect(sid)
        with contextlib.suppress(Exception):
            await self.sio.eio.disconnect(eio_sid)

    async def _presence_heartbeat(self) -> None:
        """Refresh presence of local clients every ttl/3, so they expire only if we die."""
        while True:
            await asyncio.sleep(self.settings.presence_ttl / 3)
            try:
                await self.broker.keep(list(self.local))
            except BrokerError as exc:
                log.warning("renewing channel state failed: %s", exc)
            by_channel: dict[str, dict[str, dict[str, Any]]] = {}
            for client in list(self.clients.values()):
                for channel in client.subs:
                    if not self.policy.namespace(channel).presence:
                        continue
                    by_channel.setdefault(channel, {})[client.sid] = self._member(client, channel)
            for channel, members in by_channel.items():
                try:
                    await self.broker.presence_touch(channel, members)
                except BrokerError as exc:
                    log.warning("presence heartbeat failed: %s", exc)
                    break
                except Exception:
                    log.exception("presence heartbeat failed")
                    break

    # --- HTTP API ------------------------------------------------------------------------------


_packet = transport.event_packet


def _failure(sid: str, exc: BaseException) -> dict[str, Any]:
    """The error ack of a failed socket.io handler; a bad client never crashes the replica."""
    if isinstance(exc, Refused):
        return error(str(exc), exc.code)
    if isinstance(exc, ChannelError | AuthError):
        return error(str(exc))
    if isinstance(exc, BrokerError):
        log.warning("broker error: %s", exc)
        return error(f"broker unavailable: {exc}")
    log.error("handler failed for %s", sid, exc_info=exc)
    return error(f"internal error: {type(exc).__name__}")


def _publish_ack(position: Position, duplicate: bool) -> dict[str, Any]:
    ack: dict[str, Any] = {"epoch": position.epoch, "offset": position.offset}
    if duplicate:
        ack["duplicate"] = True
    return ack


def _recovery_packet(channel: str, position: Position, *, subscribed: bool = True) -> Packet:
    """``recovery`` with ``recovered: false``: the stream of ``channel`` continues after
    ``position`` (``subscribed: false``: it does not continue; subscribe again with since)."""
    payload: dict[str, Any] = {
        "channel": channel,
        "epoch": position.epoch,
        "offset": position.offset,
        "recovered": False,
    }
    if not subscribed:
        payload["subscribed"] = False
    return _packet("recovery", payload)


def _message_packet(message: Message) -> Packet:
    """A message's packet. A message that cannot be encoded (one published past the limits,
    by an older replica) is never allowed to break fan-out: its subscribers get a ``recovery``
    notice at its position instead, so the hole is announced and the stream goes on."""
    try:
        return _packet("message", message.wire())
    except (RecursionError, ValueError, TypeError) as exc:
        log.warning(
            "message %s:%s of %s cannot be encoded (%s): announced as not recovered",
            message.epoch, message.offset, message.channel, type(exc).__name__,
        )  # fmt: skip
        return _recovery_packet(message.channel, Position(message.epoch, message.offset))


def _query_token(query: str) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(query).get("token")
    return values[0] if values else None


def _parse_since(value: Any) -> Position | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("epoch"), str)
        or len(value["epoch"]) > 64
        or "offset" not in value
    ):
        raise ChannelError('since must be {"epoch": <string>, "offset": <integer >= 0>}')
    try:
        offset = check_offset(value["offset"])
    except ChannelError as exc:
        raise ChannelError(f"since: {exc}") from None
    return Position(value["epoch"], offset)


async def serve(hub: Hub, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve ``hub`` on host:port until ``stop`` is set; then shut down in order."""
    banner = (
        f"limpet hub {hub.settings.name!r} listening on http://{host}:{port}/ "
        f"(broker {hub.broker.kind})"
    )
    await serve_aiohttp(
        hub.app(),
        host,
        port,
        stop,
        banner=banner,
        make_runner=functools.partial(
            transport.HubRunner,
            head_timeout=hub.settings.head_timeout,
            unfinished=hub.unfinished,
        ),
    )
