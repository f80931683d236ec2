"""The hub's socket.io server and HTTP API (python-socketio on aiohttp, Engine.IO v4).

Decisions (offsets, recovery, the live/history seam) live in ``limpet.hub.channels``; this module
moves bytes between socket.io clients, the HTTP API and the broker. Every client has one outbound
queue drained by one task, so the messages of a channel reach it in offset order.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import socketio
from aiohttp import web

from limpet.errors import BrokerError, ChannelError, LimpetError
from limpet.hub.brokers.base import Broker
from limpet.hub.channels import (
    Envelope,
    Message,
    Position,
    PresenceEvent,
    Subscription,
    validate_channel,
)
from limpet.hub.channels.records import encode_data
from limpet.hub.channels.recovery import Step

log = logging.getLogger("limpet.hub")
STATIC = Path(__file__).parent / "static"


class AuthError(LimpetError):
    """A JWT is missing, malformed, expired, or does not grant the channel."""


@dataclass(frozen=True)
class HubSettings:
    name: str = "hub"
    max_payload: int = 64 * 1024
    #: the most messages one recovery (or one HTTP history page) returns
    history_limit: int = 1000
    presence_ttl: float = 15.0
    jwt_secret: str | None = None
    cors_origins: str | list[str] = "*"


@dataclass
class Client:
    """One connected socket.io client: identity, subscriptions and its outbound queue."""

    sid: str
    user: str
    claims: dict[str, Any]
    subs: dict[str, Subscription] = field(default_factory=dict)
    filling: set[str] = field(default_factory=set)
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(default_factory=asyncio.Queue)
    sender: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Client(sid={self.sid!r}, user={self.user!r}, channels={sorted(self.subs)})"


def error(message: str) -> dict[str, str]:
    return {"error": message}


def _granted(claims: dict[str, Any], claim: str, channel: str) -> bool:
    """A claim absent from the token grants every channel; present, it is a list of globs."""
    patterns = claims.get(claim)
    if patterns is None:
        return True
    if isinstance(patterns, str):
        patterns = [patterns]
    return isinstance(patterns, list) and any(
        isinstance(p, str) and fnmatch.fnmatchcase(channel, p) for p in patterns
    )


class Hub:
    """A hub replica: socket.io events + HTTP API on top of one broker."""

    def __init__(self, broker: Broker, settings: HubSettings) -> None:
        self.broker = broker
        self.settings = settings
        self.clients: dict[str, Client] = {}
        #: channel -> sids of local clients subscribed to it (the routing the broker follows)
        self.local: dict[str, set[str]] = {}
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            cors_allowed_origins=settings.cors_origins,
            # Let payloads a few times over the limit through so they get an error ack
            # rather than a dropped connection; Engine.IO still caps the rest.
            max_http_buffer_size=max(1 << 20, 4 * settings.max_payload),
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        broker.on_envelope = self._on_envelope
        broker.on_resync = self._on_resync
        self._register()

    def __repr__(self) -> str:
        return f"Hub(name={self.settings.name!r}, clients={len(self.clients)}, channels={len(self.local)}, broker={self.broker!r})"

    # --- lifecycle -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=max(1 << 20, 4 * self.settings.max_payload),
            middlewares=[_errors_as_json],
        )
        self.sio.attach(app, socketio_path="socket.io")
        app.router.add_post("/api/channels/{channel}/messages", self.http_publish)
        app.router.add_get("/api/channels/{channel}/messages", self.http_history)
        app.router.add_get("/api/channels/{channel}/presence", self.http_presence)
        app.router.add_get("/healthz", self.http_health)
        app.router.add_get("/", self.http_index)
        app.router.add_static("/static/", STATIC)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _startup(self, app: web.Application) -> None:
        await self.broker.start()
        self._heartbeat = asyncio.create_task(self._presence_heartbeat())

    async def _shutdown(self, app: web.Application) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for sid in list(self.clients):
            await self._drop_client(sid)
        await self.sio.shutdown()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
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
        sio.on("publish", self._guard(self.on_publish))
        sio.on("presence", self._guard(self.on_presence))
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
            except (ChannelError, AuthError) as exc:
                return error(str(exc))
            except BrokerError as exc:
                log.warning("broker error: %s", exc)
                return error(f"broker unavailable: {exc}")
            except Exception as exc:  # the replica stays up whatever a client sends
                log.exception("handler failed for %s", sid)
                return error(f"internal error: {type(exc).__name__}")

        return guarded

    async def on_unknown(self, event: str, sid: str, *args: Any) -> dict[str, str]:
        return error(f"unknown event {event!r}")

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        claims: dict[str, Any] = {}
        if self.settings.jwt_secret is not None:
            token = auth.get("token") if isinstance(auth, dict) else None
            if not token:
                token = _query_token(environ.get("QUERY_STRING", ""))
            try:
                claims = self.verify(token)
            except AuthError as exc:
                raise socketio.exceptions.ConnectionRefusedError(error(str(exc))) from None
        user = claims.get("sub") or (auth.get("user") if isinstance(auth, dict) else None) or sid
        client = Client(sid, str(user)[:128], claims)
        client.sender = asyncio.create_task(self._send_loop(client))
        self.clients[sid] = client

    async def on_disconnect(self, sid: str, *reason: Any) -> None:
        await self._drop_client(sid)

    async def on_subscribe(self, client: Client, data: dict[str, Any]) -> dict[str, Any]:
        channel = validate_channel(data.get("channel"))
        if not _granted(client.claims, "channels", channel):
            raise AuthError(f"token does not grant subscribe to {channel!r}")
        since = _parse_since(data.get("since"))
        if channel in client.subs:
            self._detach(client, channel)
        sub = Subscription(channel, since)
        # Live first, then history: whatever is published in between is buffered by the seam.
        client.subs[channel] = sub
        first = channel not in self.local
        self.local.setdefault(channel, set()).add(client.sid)
        if first:
            await self.broker.subscribe(channel)
        member = {client.sid: {"user": client.user, "replica": self.settings.name}}
        await self.broker.presence_touch(channel, member)
        await self.broker.announce(
            channel, PresenceEvent(channel, "join", client.sid, member[client.sid])
        )
        page = await self.broker.history(
            channel, sub.fetch_since if since is not None else None, self.settings.history_limit
        )
        if client.subs.get(channel) is not sub:
            return error("unsubscribed while subscribing")
        step = sub.on_history(page)
        assert step.recovery is not None
        # No await from here to the return: the ack is queued by python-socketio before the
        # sender task can run, so it precedes the recovered messages.
        self._apply(client, sub, step, report=False)
        position = step.recovery.position
        return {
            "channel": channel,
            "epoch": position.epoch,
            "offset": position.offset,
            "recovered": step.recovery.recovered,
        }

    async def on_unsubscribe(self, client: Client, data: dict[str, Any]) -> dict[str, Any]:
        channel = validate_channel(data.get("channel"))
        if channel not in client.subs:
            return error(f"not subscribed to {channel!r}")
        await self._leave(client, channel)
        return {"channel": channel}

    async def on_publish(self, client: Client, data: dict[str, Any]) -> dict[str, Any]:
        channel = validate_channel(data.get("channel"))
        if not _granted(client.claims, "publish", channel):
            raise AuthError(f"token does not grant publish to {channel!r}")
        if "data" not in data:
            raise ChannelError("publish needs a 'data' field")
        position, duplicate = await self._publish(
            channel, data["data"], data.get("idempotency_key")
        )
        ack: dict[str, Any] = {"epoch": position.epoch, "offset": position.offset}
        if duplicate:
            ack["duplicate"] = True
        return ack

    async def on_presence(self, client: Client, data: dict[str, Any]) -> dict[str, Any]:
        channel = validate_channel(data.get("channel"))
        if not _granted(client.claims, "channels", channel):
            raise AuthError(f"token does not grant {channel!r}")
        return {"channel": channel, "clients": await self.broker.presence(channel)}

    # --- shared paths ------------------------------------------------------------------------

    def verify(self, token: Any) -> dict[str, Any]:
        import jwt

        if not isinstance(token, str) or not token:
            raise AuthError("a JWT is required (auth {token} or ?token=)")
        try:
            claims = jwt.decode(token, self.settings.jwt_secret, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise AuthError(f"bad JWT: {exc}") from None
        return dict(claims)

    async def _publish(
        self, channel: str, data: Any, idempotency_key: Any
    ) -> tuple[Position, bool]:
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 128
        ):
            raise ChannelError("idempotency_key must be a string of 1..128 characters")
        try:
            size = len(encode_data(data))
        except (TypeError, msgspec.EncodeError) as exc:
            raise ChannelError(f"data is not JSON: {exc}") from None
        if size > self.settings.max_payload:
            raise ChannelError(
                f"payload too large: {size} bytes > {self.settings.max_payload} allowed"
            )
        return await self.broker.publish(channel, data, idempotency_key=idempotency_key)

    async def _leave(self, client: Client, channel: str) -> None:
        self._detach(client, channel)
        with contextlib.suppress(BrokerError):
            await self.broker.presence_remove(channel, client.sid)
            await self.broker.announce(
                channel, PresenceEvent(channel, "leave", client.sid, {"user": client.user})
            )
        if channel not in self.local:
            with contextlib.suppress(BrokerError):
                await self.broker.unsubscribe(channel)

    def _detach(self, client: Client, channel: str) -> None:
        client.subs.pop(channel, None)
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
        if client.sender is not None:
            client.sender.cancel()

    # --- delivery ------------------------------------------------------------------------------

    def _on_envelope(self, record: Envelope) -> None:
        sids = self.local.get(record.channel)
        if not sids:
            return
        for sid in list(sids):
            client = self.clients.get(sid)
            if client is None:
                continue
            if isinstance(record, Message):
                sub = client.subs.get(record.channel)
                if sub is not None:
                    self._apply(client, sub, sub.on_live(record))
            elif record.client != sid:
                event = "join" if record.action == "join" else "leave"
                client.queue.put_nowait(
                    (event, {"channel": record.channel, "client": record.client, **record.info})
                )

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
        for message in step.deliver:
            client.queue.put_nowait(("message", message.wire()))
        if report and step.recovery is not None and not step.recovery.recovered:
            position = step.recovery.position
            client.queue.put_nowait(
                (
                    "recovery",
                    {
                        "channel": sub.channel,
                        "epoch": position.epoch,
                        "offset": position.offset,
                        "recovered": False,
                    },
                )
            )
        if fill and step.fetch_since is not None and sub.channel not in client.filling:
            client.filling.add(sub.channel)
            self._spawn(self._fill(client, sub))

    async def _fill(self, client: Client, sub: Subscription) -> None:
        """Fetch history until the subscription's gap is closed (or it is gone); retry with a
        capped backoff while the broker is unreachable."""
        attempt = 0
        try:
            while client.subs.get(sub.channel) is sub and self.clients.get(client.sid) is client:
                if attempt:
                    await asyncio.sleep(min(2.0, 0.1 * attempt))
                attempt += 1
                try:
                    page = await self.broker.history(
                        sub.channel, sub.fetch_since, self.settings.history_limit
                    )
                except BrokerError as exc:
                    log.warning("history of %s failed (%s); retrying", sub.channel, exc)
                    continue
                if client.subs.get(sub.channel) is not sub:
                    return
                step = sub.on_history(page)
                self._apply(client, sub, step, fill=False)
                if step.fetch_since is None:
                    return
        finally:
            client.filling.discard(sub.channel)

    async def _send_loop(self, client: Client) -> None:
        while True:
            item = await client.queue.get()
            if item is None:
                return
            event, payload = item
            try:
                await self.sio.emit(event, payload, to=client.sid)
            except Exception:  # a closing socket; disconnect cleans up
                log.debug("emit to %s failed", client.sid, exc_info=True)

    async def _presence_heartbeat(self) -> None:
        """Refresh presence of local clients every ttl/3, so they expire only if we die."""
        while True:
            await asyncio.sleep(self.settings.presence_ttl / 3)
            by_channel: dict[str, dict[str, dict[str, Any]]] = {}
            for client in list(self.clients.values()):
                for channel in client.subs:
                    by_channel.setdefault(channel, {})[client.sid] = {
                        "user": client.user,
                        "replica": self.settings.name,
                    }
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

    def _http_auth(self, request: web.Request, claim: str, channel: str) -> None:
        if self.settings.jwt_secret is None:
            return
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else request.query.get("token")
        try:
            claims = self.verify(token)
        except AuthError as exc:
            raise HttpError(401, str(exc)) from None
        if not _granted(claims, claim, channel):
            raise HttpError(403, f"token does not grant {channel!r}")

    def _channel(self, request: web.Request) -> str:
        try:
            return validate_channel(request.match_info["channel"])
        except ChannelError as exc:
            raise HttpError(400, str(exc)) from None

    async def http_publish(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        self._http_auth(request, "publish", channel)
        raw = await request.read()
        if len(raw) > 2 * self.settings.max_payload + 1024:
            raise HttpError(413, "payload too large")
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise HttpError(400, f"body is not JSON: {exc}") from None
        if not isinstance(body, dict) or "data" not in body:
            raise HttpError(400, 'body must be {"data": <json>}')
        try:
            position, duplicate = await self._publish(
                channel, body["data"], body.get("idempotency_key")
            )
        except ChannelError as exc:
            raise HttpError(413 if "too large" in str(exc) else 400, str(exc)) from None
        except BrokerError as exc:
            raise HttpError(503, f"broker unavailable: {exc}") from None
        payload: dict[str, Any] = {"epoch": position.epoch, "offset": position.offset}
        if duplicate:
            payload["duplicate"] = True
        return web.json_response(payload, status=201)

    async def http_history(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        self._http_auth(request, "channels", channel)
        try:
            since = int(request.query.get("since", "0"))
            limit = int(request.query.get("limit", str(self.settings.history_limit)))
            if since < 0 or limit < 0:
                raise ValueError
        except ValueError:
            raise HttpError(400, "since and limit must be integers >= 0") from None
        try:
            page = await self.broker.history(
                channel, since, min(limit, self.settings.history_limit)
            )
        except BrokerError as exc:
            raise HttpError(503, f"broker unavailable: {exc}") from None
        return web.json_response(
            {
                "epoch": page.epoch,
                "offset": page.offset,
                "messages": [m.wire() for m in page.messages],
            }
        )

    async def http_presence(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        self._http_auth(request, "channels", channel)
        try:
            clients = await self.broker.presence(channel)
        except BrokerError as exc:
            raise HttpError(503, f"broker unavailable: {exc}") from None
        return web.json_response({"clients": clients})

    async def http_health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"name": self.settings.name, "clients": len(self.clients), "channels": len(self.local)}
        )

    async def http_index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")


class HttpError(Exception):
    """An HTTP API failure: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@web.middleware
async def _errors_as_json(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except HttpError as exc:
        return web.json_response(error(str(exc)), status=exc.status)


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
        or not isinstance(value.get("offset"), int)
        or isinstance(value.get("offset"), bool)
        or value["offset"] < 0
    ):
        raise ChannelError('since must be {"epoch": <string>, "offset": <integer >= 0>}')
    return Position(value["epoch"], value["offset"])


async def serve(hub: Hub, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve ``hub`` on host:port until ``stop`` is set; then shut down in order."""
    runner = web.AppRunner(hub.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    print(
        f"limpet hub {hub.settings.name!r} listening on http://{host}:{port}/ "
        f"(broker {hub.broker.kind})",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
