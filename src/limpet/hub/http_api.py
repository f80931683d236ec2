"""The hub's HTTP API: publish, history and presence of a channel as JSON, the health check and
the chat page. Every failure is answered as ``{"error": message}``, aiohttp's own (404, 405,
413) too. It is handed the few things it needs (settings, broker, the publish path, a health
summary), not the hub."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import WSCloseCode, web

from limpet.errors import BrokerError, ChannelError
from limpet.hub.access import AuthError, error, granted, verify_token
from limpet.hub.admission import Admission, Refusal
from limpet.hub.brokers.base import Broker
from limpet.hub.channels import Message, Position, validate_channel
from limpet.hub.channels.payload import MAX_OFFSET, check_offset
from limpet.hub.channels.records import UNREADABLE
from limpet.hub.settings import HubSettings

log = logging.getLogger("limpet.hub")
STATIC = Path(__file__).parent / "static"

#: publish(channel, data, idempotency_key) -> (position, duplicate)
Publish = Callable[[str, Any, Any], Awaitable[tuple[Position, bool]]]


class HttpError(Exception):
    """An HTTP API failure: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpApi:
    """The routes of the HTTP API; ``add_routes`` puts them on the hub's application."""

    def __init__(
        self,
        settings: HubSettings,
        broker: Broker,
        publish: Publish,
        health: Callable[[], dict[str, Any]],
    ) -> None:
        self.settings, self.broker, self.publish, self.health = settings, broker, publish, health

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/channels/{channel}/messages", self.http_publish)
        app.router.add_get("/api/channels/{channel}/messages", self.http_history)
        app.router.add_get("/api/channels/{channel}/presence", self.http_presence)
        app.router.add_get("/healthz", self.http_health)
        app.router.add_get("/", self.http_index)
        app.router.add_get("/favicon.ico", self.http_favicon)
        app.router.add_static("/static/", STATIC)

    def _http_auth(self, request: web.Request, claim: str, channel: str) -> None:
        if self.settings.jwt_secret is None:
            return
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else request.query.get("token")
        try:
            claims = verify_token(
                token, self.settings.jwt_secret, require_exp=self.settings.jwt_require_exp
            )
        except AuthError as exc:
            raise HttpError(401, str(exc)) from None
        if not granted(claims, claim, channel):
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
        except RecursionError:  # deeper than msgspec goes (on 3.13 too): past any --max-depth,
            # the answer check_shape gives to data msgspec does read
            depth = self.settings.max_depth
            raise HttpError(400, f"data nested deeper than {depth} levels") from None
        if not isinstance(body, dict) or "data" not in body:
            raise HttpError(400, 'body must be {"data": <json>}')
        try:
            position, duplicate = await self.publish(
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
            since = check_offset(int(request.query.get("since", "0")))
            limit = check_offset(int(request.query.get("limit", str(self.settings.history_limit))))
        except (ValueError, ChannelError):
            raise HttpError(400, f"since and limit must be integers in 0..{MAX_OFFSET}") from None
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
                "messages": [_http_message(m) for m in page.messages],
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
        return web.json_response(self.health())

    async def http_index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def http_favicon(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "favicon.ico")


@web.middleware
async def errors_as_json(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ConnectionResetError:
        # The client went away mid-request (a handshake it gave up on, a poll it dropped):
        # nothing can be answered and nothing is wrong with the hub. aiohttp's attempt to send
        # this placeholder fails quietly (its ConnectionError path); a reset that is not this
        # request's own connection is a failure like any other.
        transport = request.transport
        if transport is None or transport.is_closing():
            log.debug("%s %s: client went away", request.method, request.path)
            return web.Response(status=499)
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response(error("internal error: ConnectionResetError"), status=500)
    except HttpError as exc:
        return web.json_response(error(str(exc)), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own answers (404 no route, 405, 413 body too large) in the same JSON shape
        message = exc.reason.lower()
        if exc.text and not exc.text.startswith(f"{exc.status}:"):
            message = f"{message}: {exc.text}"
        return web.json_response(error(message), status=exc.status, headers=_allow(exc))
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response(error(f"internal error: {type(exc).__name__}"), status=500)


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


def _http_message(message: Message) -> dict[str, Any]:
    if message.data is UNREADABLE:
        wire = message.wire()
        del wire["data"]
        return {**wire, "error": "stored data cannot be decoded"}
    return message.wire()


#: the request key under which an admitted handshake's ticket reaches the socket.io connect
TICKET = "limpet.admission.ticket"


def admission_gate(admission: Admission, socketio_path: str, cors_origins: Any) -> Any:
    """Middleware: every new Engine.IO handshake (``GET /socket.io/`` without ``sid``) asks
    ``admission`` first. Admitted, it carries its ticket (``request[TICKET]``) to the socket.io
    connect; refused, a polling handshake gets 503 with ``Retry-After`` and a WebSocket is
    accepted and closed at once with 1013 (Try Again Later, RFC 6455 §7.4.1 via the IANA
    registry), its reason saying when: "try again later: retry after N s"."""
    path = f"/{socketio_path.strip('/')}/"

    @web.middleware
    async def gate(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != path or request.method != "GET" or "sid" in request.query:
            response: web.StreamResponse = await handler(request)
            return response
        verdict = admission.admit(time.monotonic())
        if isinstance(verdict, Refusal):
            return await _refuse(request, verdict.retry_after, cors_origins)
        request[TICKET] = verdict
        try:
            response = await handler(request)
        except BaseException:
            admission.done(verdict)
            raise
        if response.status >= 400:  # engineio refused it (bad transport, CORS ...)
            admission.done(verdict)
        return response

    return gate


async def _refuse(request: web.Request, retry_after: int, cors_origins: Any) -> web.StreamResponse:
    reason = f"try again later: retry after {retry_after} s"
    if request.headers.get("Upgrade", "").lower() == "websocket":
        ws = web.WebSocketResponse(compress=False)  # aiohttp would deflate the close frame
        try:
            await ws.prepare(request)
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=reason.encode())
        except ConnectionError:
            pass  # gone already: nothing to tell it
        return ws
    headers = {"Retry-After": str(retry_after), "Access-Control-Expose-Headers": "Retry-After"}
    origin = request.headers.get("Origin")
    if origin and (cors_origins == "*" or origin in (cors_origins or ())):
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
    return web.json_response(
        {"error": reason, "retry_after": retry_after}, status=503, headers=headers
    )
